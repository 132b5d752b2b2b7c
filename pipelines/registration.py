"""Registering a generator: the flow's one call after evaluation, ``register_run``.

It exports the checkpoint's EMA generator with torch.export (MLflow's ``pt2`` format: a graph
and raw weights, nothing unpickled on load) with signature z → image and an input example,
registers a version of ``registry.model_name`` carrying what the gate reads and the lineage
users filter on as tags, runs the gate (``pipelines.registry.apply_gate``), and writes the
model card (run artifact ``model_card/``, the version's description) and the verdict (the
run's and the logged model's description).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganpkg.config import Config
from ganpkg.evaluation.protocol import packed_tag
from ganpkg.metrics import charted, gate_inputs
from pipelines.card import NOTE_TAG, card_html, model_card, verdict
from pipelines.eval_record import eval_metrics
from pipelines.faults import pause_point
from pipelines.gate import GateDecision
from pipelines.registry import apply_gate, check_servable
from pipelines.registry_load import using_tracking_uri
from pipelines.tracking import EVAL, get_client

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
