"""Retrain policy and the flow's two mutual exclusions (Prefect- and MLflow-facing glue).

Neither may outlive a killed holder. The workspace (DVC's data stage) is one folder on one
machine: an OS file lock in it, which the kernel frees when its holder dies. The registry is
shared by machines only through a configured Prefect server: there its global concurrency
limit, whose lease a dead holder stops renewing (``LEASE_S``; infra's servers keep leases on disk
so a server restart does not strand them). `ganpkg run`'s temporary server keeps leases in its
own memory, so a slot taken there and killed with it stayed taken in PREFECT_HOME's database for
good: with that server the registry relies on the gate's file lock alone (registry_lock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ganpkg.config import Config


def champion_changes(config: Config, lineage: dict[str, Any],
                     tracking_uri: str | None = None) -> tuple[bool, str]:
    """(train?, why): train when the data version or the config differs from the champion's."""
    from pipelines.registry import CHAMPION, alias_version
    from pipelines.tracking import get_client

    client = get_client(tracking_uri)
    name = config.registry.model_name
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        return True, f"no champion of {name} yet"
    tags = champion.tags
    changes = []
    data_md5 = str(lineage.get("data_dvc_md5"))
    if tags.get("data.dvc_md5") != data_md5:
        changes.append(f"data version {tags.get('data.dvc_md5')} → {data_md5}")
    saved = tags.get("ganpkg.result_hash")
    if saved is None:  # registered before result hashes: the whole params file counts
        if tags.get("ganpkg.params_hash") != config.params_hash():
            changes.append(f"params {tags.get('ganpkg.params_hash')} → {config.params_hash()}")
    elif saved != config.result_hash():
        changes.append(changed_keys(client, champion.run_id, config)
                       or f"result keys {saved} → {config.result_hash()}")
    if changes:
        return True, "; ".join(changes)
    return False, (f"data {data_md5} and the result-affecting params ({config.result_hash()}) "
                   f"are those of {name} v{champion.version} (@champion); schedule, gate and "
                   f"output keys do not count; use --force to retrain anyway")


def changed_keys(client, run_id: str, config: Config, limit: int = 5) -> str:
    """'train.lr_g 0.0002 → 0.0001, …': the result keys whose value differs from the run's
    logged params ('' when the run's params cannot say)."""
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001  a deleted run: the hash alone then says it changed
        return ""
    # Params are immutable: a resumed run records a changed value as a resume.<key> tag.
    logged = {**run.data.params, **{k.removeprefix("resume."): v for k, v in
                                    run.data.tags.items() if k.startswith("resume.")}}
    diffs = [f"{key} {logged.get(key, '(unset)')} → {value}"
             for key, value in sorted(config.result_keys().items())
             if logged.get(key) != str(value)]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the Prefect global concurrency limit ``name`` once (idempotent, race-safe)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except Exception:  # noqa: BLE001  the error type depends on the server's database
            # Two flows starting together both try to create it; one wins (409 or a unique
            # constraint error, depending on the server's database). Then it exists.
            client.read_global_concurrency_limit_by_name(name)


REGISTRY_LIMIT = "ganpkg-registry"  # one registration and alias decision at a time
WORKSPACE_LOCK = ".dvc/tmp/ganpkg-workspace.lock"  # beside DVC's own rwlock; not versioned
LEASE_S = 60.0  # a dead holder's registry slot frees itself within about this
_log = logging.getLogger("ganpkg.policy")


@contextmanager
def workspace_lock(repo: str | Path = ".") -> Iterator[None]:
    """One data sync/repro at a time in this project folder (DVC locks the workspace and would
    fail the second); waits for a live holder, never for a dead one."""
    from filelock import FileLock, Timeout

    path = Path(repo) / WORKSPACE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _log.info("waiting for another ganpkg run's data stage in %s to finish", Path(repo).resolve())
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def configured_prefect_server() -> bool:
    """True when flows report to a server the user runs (PREFECT_API_URL), not a temporary one."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def registry_slot():
    """The registry's cross-machine exclusion: Prefect's limit on a configured server (with a
    short, renewed lease), nothing extra on a temporary one (see the module docstring)."""
    if not configured_prefect_server():
        return nullcontext()
    from prefect.concurrency.sync import concurrency

    ensure_concurrency_limit(REGISTRY_LIMIT)
    return concurrency(REGISTRY_LIMIT, occupy=1, strict=True, lease_duration=LEASE_S)
