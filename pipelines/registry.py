"""MLflow model registry: log the EMA generator without pickle, register it, gate promotion.

``register_run`` is the flow's one call after evaluation: it exports the checkpoint's EMA
generator with torch.export (MLflow's ``pt2`` format: a graph and raw weights, nothing
unpickled on load) with signature z → image and an input example, registers a version of
``registry.model_name`` carrying metrics, protocol and lineage as tags, runs the gate, and
writes the model card (run artifact ``model_card/`` and the version's description).

Aliases: ``champion`` (what users sample), ``challenger`` (the newest version that did not
pass the gate), ``previous-champion`` (the champion it replaced: ``rollback`` target).
"""

from __future__ import annotations

import getpass
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganpkg.config import Config, RegistryConfig
from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import packed_tag
from ganpkg.files import write_atomic
from ganpkg.metrics import charted, gate_inputs
from pipelines.card import NOTE_TAG, card_html, model_card, verdict
from pipelines.faults import pause_point
from pipelines.gate import CHALLENGER, CHAMPION, PREVIOUS, GateDecision, decide
from pipelines.registry_load import using_tracking_uri
from pipelines.tracking import EVAL, eval_metrics, get_client, sqlite_artifact_root

# Run tags copied onto each version: what users filter versions on (and the retrain policy
# reads). The registry page lists every version tag in each row, so the full lineage stays on
# the run and in the model card (card.LINEAGE_PREFIXES).
VERSION_LINEAGE = ("git.commit", "data.dvc_md5", "ganpkg.result_hash")
GRID_SEED = 0


@dataclass(frozen=True)
class Registration:
    """What ``register_run`` did."""

    name: str
    version: str
    model_uri: str
    decision: GateDecision


# -- aliases --------------------------------------------------------------------------------
CHAMPION_METRICS = "champion.json"  # dvc.yaml's top-level metrics: `dvc metrics show`


def write_champion_metrics(name: str, path: str | Path = CHAMPION_METRICS,
                           tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The current @champion's version and metrics as JSON at ``path`` (atomically), for
    `dvc metrics show`/`diff`; None (and nothing written) while there is no champion."""
    champion = alias_version(get_client(tracking_uri), name, CHAMPION)
    if champion is None:
        return None
    body = {"model": name, "version": int(champion.version),
            **{k.removeprefix("metric."): float(v) for k, v in sorted(champion.tags.items())
               if k.startswith("metric.")}}
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
                                   "promotion.reason": reason, "promotion.by": _user(),
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
    stamp = {"rollback.reason": reason, "rollback.by": _user(),
             "rollback.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    replaced = str(current.version) if current else "none"
    _stamp(client, name, str(previous.version), {**stamp, "rollback.replaced": replaced})
    if current is not None:
        _stamp(client, name, str(current.version), {**stamp, "rollback.rolled_back": "true"})
    return str(previous.version)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


# -- logging and registering the generator --------------------------------------------------
def model_signature(z_dim: int, channels: int, resolution: int):
    """z: float32 (N, z_dim) → image: float32 (N, C, H, W) in [-1, 1].

    The input is left unnamed: a named tensor reaches the pyfunc flavour as a dict, which
    MLflow's PyTorch pyfunc refuses, so serving (and the input example's check) would fail.
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, z_dim))]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, channels, resolution, resolution),
                                   "image")]))


def log_generator(client, run_id: str, generator, z_dim: int, channels: int, resolution: int,
                  step: int = 0):
    """Log the generator to the run in MLflow's pt2 (torch.export) format; returns ModelInfo."""
    import mlflow
    import mlflow.pytorch
    import torch

    # Batch 2: torch.export specializes size-1 dimensions, and the batch must stay dynamic.
    # numpy, not a tensor: MLflow saves only array examples (input_example.json) and adds the
    # pyfunc flavour (serving) only for them.
    example = torch.randn(2, z_dim, generator=torch.Generator().manual_seed(0)).numpy()
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    status = client.get_run(run_id).info.status
    # log_model's logged-model record takes its experiment from the active run.
    with using_tracking_uri(client.tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            generator.cpu().eval(), name="generator", serialization_format="pt2",
            signature=model_signature(z_dim, channels, resolution), input_example=example,
            pip_requirements=requirements,  # explicit: inference would load it in a subprocess
            step=step)  # the logged model sits at its checkpoint's step, not at 0
    if status == "RUNNING":  # leaving start_run ended it: the flow ends it, after the gate
        client.update_run(run_id, status="RUNNING")
    return info


def _version_tags(run_tags: dict[str, str], metrics: dict[str, float],
                  protocol: dict[str, Any], step: int) -> dict[str, str]:
    tags = {k: run_tags[k] for k in VERSION_LINEAGE if k in run_tags}
    tags.update({f"metric.{k}": repr(float(v)) for k, v in gate_inputs(metrics).items()})
    tags.update(packed_tag(protocol))
    tags["checkpoint.step"] = str(step)
    return tags


def register_run(run_id: str, checkpoint: str | Path, metrics: dict[str, float],
                 protocol: dict[str, Any], config: Config,
                 tracking_uri: str | None = None, chosen: str | None = None) -> Registration:
    """Log the checkpoint's EMA generator, register a version, gate it, write its model card.
    ``chosen``: why this checkpoint of the run (the version's ``checkpoint.chosen``)."""
    from mlflow.exceptions import MlflowException

    from ganpkg.checkpoint import load_generator
    from ganpkg.sampling import fixed_noise, save_grid

    client = get_client(tracking_uri)
    name = config.registry.model_name
    generator, info = load_generator(checkpoint)
    version = registered_version(client, name, run_id, info["step"])
    run_tags = client.get_run(run_id).data.tags  # lineage: the version's few tags and the card
    if version is None:
        model = log_generator(client, run_id, generator, info["z_dim"], info["channels"],
                              info["resolution"], step=info["step"])
        try:
            client.create_registered_model(name, description="ganpkg generators (z → image)")
        except MlflowException:
            pass  # already there
        tags = _version_tags(run_tags, metrics, protocol, info["step"])
        if chosen:
            tags["checkpoint.chosen"] = chosen
        # The registry resolves a logged model's models:/m-… source through the global URI.
        with using_tracking_uri(client.tracking_uri):
            version = str(client.create_model_version(
                name, model.model_uri, run_id=run_id, tags=tags, model_id=model.model_id).version)
        link_logged_model(client, model.model_id, name, version, run_id, metrics, protocol,
                          info["step"])
        pause_point("version")  # registered, not yet gated: where a kill leaves it undecided
    done = client.get_model_version(name, version).tags
    if "gate.decision" in done:  # a retry after the gate had run: its decision stands
        decision = GateDecision(done["gate.decision"], done.get("gate.reason", ""),
                                None if done.get("gate.compared_with") in (None, "none")
                                else done["gate.compared_with"])
    else:
        check_servable(client, name, version)
        decision = apply_gate(client, name, version, config.registry)
    gated = client.get_model_version(name, version)
    tags = {**run_tags, **gated.tags}
    with tempfile.TemporaryDirectory() as tmp:
        grid = save_grid(generator, fixed_noise(64, info["z_dim"], GRID_SEED),
                         Path(tmp) / "samples.png")
        spread = seed_spread(client, run_id, config.registry.primary_metric, metrics)
        card = model_card(name, version, tags, metrics, protocol, decision, run_id, spread)
        (Path(tmp) / "model_card.md").write_text(card)
        (Path(tmp) / "model_card.html").write_text(card_html(card, grid.read_bytes()))
        client.log_artifacts(run_id, tmp, "model_card")
    client.update_model_version(name, version, description=card)
    # The verdict where reviewers land: the run's and the logged model's Description.
    short = verdict(name, version, config.registry.primary_metric, tags, metrics, protocol,
                    decision, run_id)
    client.set_tag(run_id, NOTE_TAG, short)
    model_id = gated.model_id or (gated.source.removeprefix("models:/")
                                  if str(gated.source).startswith("models:/m-") else None)
    if model_id:
        client.set_logged_model_tags(model_id, {NOTE_TAG: short})
    return Registration(name, str(version), f"models:/{name}/{version}", decision)


def link_logged_model(client, model_id: str, name: str, version: str, run_id: str,
                      metrics: dict[str, float], protocol: dict[str, Any], step: int) -> None:
    """Make MLflow 3's logged-model page show its version and its evaluation: the
    ``mlflow.modelVersions`` tag (an MLflow server sets it itself; the embedded store and the
    client API do not) and the evaluation metrics logged again with ``model_id`` (the page
    reads only those), on the reference data they measured."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    entry = {"name": name, "version": str(version)}
    if entry not in linked:
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(
            [*linked, entry])})
    dataset = {}
    if protocol.get("reference_md5"):
        dataset = {"dataset_name": f"reference-{protocol.get('reference_split', 'test')}",
                   "dataset_digest": str(protocol["reference_md5"])}
    client.log_batch(run_id, metrics=eval_metrics(charted(metrics), step, model_id=model_id,
                                                  **dataset))


def registered_version(client, name: str, run_id: str, step: int) -> str | None:
    """The version already registered from this run's checkpoint at ``step``, if any: a retry
    of the register task after a partial failure reuses it instead of making a second one."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:  # no such registered model yet
        return None
    same = sorted(int(v.version) for v in found if v.tags.get("checkpoint.step") == str(step))
    return str(same[0]) if same else None


def seed_spread(client, run_id: str, metric: str, metrics: dict[str, float]) -> str | None:
    """The spread of ``metric`` over the runs of this run's recipe (same params but the
    seed), when there are two seeds or more: the variation between trainings, which
    registry.margin is for (the evaluation's own noise is the se, handled by the gate)."""
    run = client.get_run(run_id)
    recipe = run.data.tags.get("ganpkg.recipe_hash")
    if not recipe or metric not in metrics:
        return None
    found = client.search_runs([run.info.experiment_id],
                               filter_string=f"tags.`ganpkg.recipe_hash` = '{recipe}'")
    key = EVAL + metric
    by_seed = {r.data.tags.get("ganpkg.seed"): r.data.metrics[key] for r in found
               if key in r.data.metrics and r.info.run_id != run_id}
    by_seed[run.data.tags.get("ganpkg.seed")] = metrics[metric]
    if len(by_seed) < 2:
        return None
    values = list(by_seed.values())
    return (f"Seed spread of this recipe ({recipe}): {metric} sd {statistics.stdev(values):.4g} "
            f"over {len(values)} seeds (range {min(values):.4g}–{max(values):.4g}). Differences "
            f"between models smaller than this are a reseed's luck: set registry.margin with it.")
