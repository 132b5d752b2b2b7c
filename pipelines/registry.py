"""MLflow model registry: the aliases and the promotion gate.

``apply_gate`` decides (``pipelines.gate.decide``) and moves the aliases under one lock:
``champion`` (what users sample), ``challenger`` (the newest version that did not pass the
gate), ``previous-champion`` (the champion it replaced: ``rollback`` target). ``promote`` and
``rollback`` move them by hand. Registering a version is ``pipelines.registration``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganpkg.config import RegistryConfig
from ganpkg.errors import UserError
from ganpkg.files import write_atomic
from pipelines.eval_record import evaluation_record
from pipelines.gate import CHALLENGER, CHAMPION, PREVIOUS, GateDecision, decide
from pipelines.run_tags import current_user
from pipelines.tracking import get_client, sqlite_artifact_root

# -- aliases --------------------------------------------------------------------------------
CHAMPION_METRICS = "champion.json"  # dvc.yaml's top-level metrics: `dvc metrics show`


def write_champion_metrics(name: str, path: str | Path = CHAMPION_METRICS,
                           tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The current @champion's version and metrics as JSON at ``path`` (atomically), for
    `dvc metrics show`/`diff`: every value its run's evaluation recorded (the version's
    ``metric.*`` tags keep only what the gate reads); None (and nothing written) while there is
    no champion."""
    client = get_client(tracking_uri)
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        return None
    measured = {k.removeprefix("metric."): float(v) for k, v in champion.tags.items()
                if k.startswith("metric.")}
    measured.update(evaluation_record(client, champion.run_id).get("metrics", {}))
    body = {"model": name, "version": int(champion.version), **dict(sorted(measured.items()))}
    write_atomic(Path(path), lambda f: f.write(json.dumps(body, indent=2).encode() + b"\n"))
    return body


def alias_version(client, name: str, alias: str):
    """The ModelVersion an alias points to, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _make_champion(client, name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``; the old champion becomes ``previous-champion``."""
    old = alias_version(client, name, CHAMPION)
    if old is not None and str(old.version) != str(version):
        client.set_registered_model_alias(name, PREVIOUS, str(old.version))
        client.set_model_version_tag(name, version, "gate.previous_champion", str(old.version))
    _crown(client, name, version)
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return str(old.version) if old is not None else None


def _crown(client, name: str, version: str) -> None:
    """``champion`` → version, with a fresh ``gate.reign`` token: gates judged against
    one reign (``gate.round``) are the ones that can have overlapped (``settle_race``)."""
    client.set_model_version_tag(name, version, "gate.reign", uuid.uuid4().hex)
    client.set_registered_model_alias(name, CHAMPION, version)


def _round(current) -> str:
    if current is None:
        return "none"
    # (gate.champion_since: the same token under its old name, on versions crowned before)
    reign = current.tags.get("gate.reign", current.tags.get("gate.champion_since", ""))
    return f"v{current.version}:{reign}"


def _stamp(client, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def check_servable(client, name: str, version: str) -> None:
    """The version loads as `sample` loads it (pickle-free pt2, its MLmodel and archive present)
    and maps z to finite images: an alias is never moved to what cannot be served."""
    import torch

    from pipelines.registry_load import load_registered_generator

    try:
        generator, z_dim = load_registered_generator(f"models:/{name}/{version}",
                                                     client.tracking_uri)
        with torch.no_grad():
            finite = bool(torch.isfinite(generator(torch.zeros(2, z_dim))).all())
    except UserError as err:
        reason = str(err)
    except Exception as err:  # noqa: BLE001  whatever a damaged artifact raises, say it
        reason = f"{err.__class__.__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    else:
        if finite:
            return
        reason = "its images are not finite numbers"
    raise UserError(f"{name} v{version} cannot be served, so no alias moves to it: {reason}")


@contextmanager
def registry_lock(client, timeout_s: float = 600.0) -> Iterator[None]:
    """One gate at a time per tracking store: a file lock beside an embedded sqlite store (two
    `ganpkg run` processes each have their own Prefect server, so Prefect's concurrency limit
    alone does not serialize them). A server store has no lock to take here: the flow's
    concurrency limit covers runs on one Prefect server, ``settle_race`` repairs the rest."""
    from filelock import FileLock

    root = sqlite_artifact_root(client.tracking_uri)
    if root is None:
        yield
        return
    with FileLock(str(root.parent / ".ganpkg-registry.lock"), timeout=timeout_s):
        yield


def _gate_tags(decision: GateDecision, cfg: RegistryConfig, round_: str) -> dict[str, str]:
    return {"gate.decision": decision.alias, "gate.round": round_, "gate.reason": decision.reason,
            "gate.compared_with": decision.compared_with or "none", "gate.rule": gate_rule(cfg),
            "gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def gate_rule(cfg: RegistryConfig) -> str:
    """The registry keys the gate judged with, in one line (one tag instead of four)."""
    return (f"{cfg.primary_metric} margin={cfg.margin:g} confidence={cfg.confidence:g} "
            f"first_champion_fraction={cfg.first_champion_fraction}")


def apply_gate(client, name: str, version: str, cfg: RegistryConfig) -> GateDecision:
    """Decide for one registered version, record the decision as version tags, move aliases.

    Read-decide-set runs under ``registry_lock``; the tags are written before the alias moves,
    so a concurrent gate on a store without a lock sees every winner (``settle_race``).
    """
    with registry_lock(client):
        candidate = client.get_model_version(name, version)
        current = alias_version(client, name, CHAMPION)
        decision = decide(candidate.tags, current.tags if current else None,
                          str(current.version) if current else None, cfg)
        _stamp(client, name, version, _gate_tags(decision, cfg, _round(current)))
        if decision.alias == CHAMPION:
            _make_champion(client, name, version)
        else:
            client.set_registered_model_alias(name, CHALLENGER, version)
        if decision.alias == CHAMPION:
            return settle_race(client, name, version, decision, cfg, _round(current))
        return decision


def settle_race(client, name: str, version: str, decision: GateDecision,
                cfg: RegistryConfig, round_: str) -> GateDecision:
    """Compare-and-repair after moving ``champion``: every version the gate made champion
    against the same predecessor (gates that overlapped) competes once more, the best keeps
    the alias, the others become challengers with the race in their reason. Returns this
    version's final decision."""
    rivals = sorted((v for v in client.search_model_versions(f"name='{name}'")
                     if v.tags.get("gate.decision") == CHAMPION
                     and v.tags.get("gate.round") == round_), key=lambda v: int(v.version))
    if len(rivals) < 2:
        return decision
    best = rivals[0]
    for rival in rivals[1:]:  # a rival replaces the best only where the gate would promote it
        if decide(rival.tags, best.tags, str(best.version), cfg).alias == CHAMPION:
            best = rival
    for loser in rivals:
        if loser.version == best.version:
            continue
        _stamp(client, name, str(loser.version), {
            "gate.decision": CHALLENGER, "gate.race": f"lost to v{best.version}",
            "gate.reason": f"overlapping gates: v{best.version}, judged against the same "
                           f"champion, is better ({loser.tags.get('gate.reason', '')})"})
        client.set_registered_model_alias(name, CHALLENGER, str(loser.version))
    current = alias_version(client, name, CHAMPION)
    if current is None or str(current.version) != str(best.version):
        _crown(client, name, str(best.version))
        _stamp(client, name, str(best.version), {"gate.race": "repaired: champion restored"})
        if decision.compared_with:  # the loser had made the winner its previous-champion
            client.set_registered_model_alias(name, PREVIOUS, decision.compared_with)
    if str(best.version) == str(version):
        return decision
    return GateDecision(CHALLENGER, f"overlapping gates: v{best.version} is better",
                        decision.compared_with)


def promote(name: str, version: str | int, reason: str, tracking_uri: str | None = None) -> str:
    """Manual promotion: ``version`` becomes champion whatever the gate said; returns the
    version it replaced (now ``previous-champion``) or 'none'."""
    from mlflow.exceptions import MlflowException

    if not reason.strip():
        raise UserError("--reason is required: say why this version should be champion")
    client = get_client(tracking_uri)
    version = str(version)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise UserError(f"--version {version}: {name} has no such version in "
                        f"{client.tracking_uri}") from None
    check_servable(client, name, version)
    old = _make_champion(client, name, version)
    _stamp(client, name, version, {"gate.decision": CHAMPION, "promotion.manual": "true",
                                   "promotion.reason": reason, "promotion.by": current_user(),
                                   "promotion.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return old if old and old != version else "none"


def rollback(name: str, reason: str = "rollback", tracking_uri: str | None = None) -> str:
    """``previous-champion`` becomes champion again; returns the restored version.

    The alias then moves one step further back (the version that one replaced), so repeated
    rollbacks walk back through the champions instead of flipping between two.
    """
    client = get_client(tracking_uri)
    previous = alias_version(client, name, PREVIOUS)
    if previous is None:
        raise UserError(f"{name} has no {PREVIOUS} alias: nothing to roll back to")
    current = alias_version(client, name, CHAMPION)
    _crown(client, name, str(previous.version))
    before = previous.tags.get("gate.previous_champion")
    if before and (current is None or before != str(current.version)):
        client.set_registered_model_alias(name, PREVIOUS, before)
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    stamp = {"rollback.reason": reason, "rollback.by": current_user(),
             "rollback.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    replaced = str(current.version) if current else "none"
    _stamp(client, name, str(previous.version), {**stamp, "rollback.replaced": replaced})
    if current is not None:
        _stamp(client, name, str(current.version), {**stamp, "rollback.rolled_back": "true"})
    return str(previous.version)
