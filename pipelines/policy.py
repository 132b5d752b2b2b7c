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
    if tags.get("ganpkg.params_hash") != config.params_hash():
        changes.append(f"params {tags.get('ganpkg.params_hash')} → {config.params_hash()}")
    if changes:
        return True, "; ".join(changes)
    return False, (f"data {data_md5} and params {config.params_hash()} are those of "
                   f"{name} v{champion.version} (@champion); use --force to retrain anyway")


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
