"""Retrain policy and the registry's concurrency guard (Prefect- and MLflow-facing glue)."""

from __future__ import annotations

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
