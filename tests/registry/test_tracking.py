"""A training run tracked to a real sqlite store logs what the UI and the lineage need."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image
from registry_helpers import METRICS, PROTOCOL

from ganpkg.config import flatten, load_config
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.metrics import parse
from ganpkg.training import TrainingDiverged, train
from pipelines.tracking import MlflowTracker


def test_run_logs_params_metrics_samples_lineage_and_files(registered):
    client = MlflowClient(registered.uri)
    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "ganpkg-default"
    params = run.data.params
    assert params["model.z_dim"] == "16" and params["train.total_steps"] == "12"
    assert len(params) == len(flatten(registered.config.model_dump(mode="json")))
    steps = [m.step for m in client.get_metric_history(registered.run_id, "train/loss_d")]
    assert steps == [2, 3, 4, 6, 8, 9, 10, 12]  # train.log_every_steps=2, and each checkpoint
    for key in ("loss_g", "d_real", "d_fake", "images_per_s", "grad_norm_g", "grad_norm_d"):
        assert len(client.get_metric_history(registered.run_id, f"train/{key}")) == 8, key
    assert [m.step for m in client.get_metric_history(registered.run_id, "train/checkpoint_step")] \
        == [3, 6, 9, 12]
    # The FID curve: a point per checkpoint, each with its se.
    curve = client.get_metric_history(registered.run_id, "eval/progress/fid_domain")
    assert [m.step for m in curve] == [3, 6, 9, 12] and all(m.value > 0 for m in curve)
    assert len(client.get_metric_history(registered.run_id, "eval/progress/fid_domain_se")) == 4
    # Evaluation: each metric's value a metric at its step; what is recorded beside it (se,
    # floor, baseline) no one-dot chart but the summary table, and everything in eval.json.
    values = {k: v for k, v in METRICS.items() if parse(k).qualifier is None}
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")
            and not k.startswith("eval/progress/")} == {f"eval/{k}": v for k, v in values.items()}
    # at the checkpoint's step (logged again with the logged model's id when registered)
    assert {m.step for m in client.get_metric_history(registered.run_id, "eval/fid_domain")} \
        == {12}
    with tempfile.TemporaryDirectory() as tmp:
        table = json.loads(Path(client.download_artifacts(
            registered.run_id, "evaluation/summary.json", tmp)).read_text())
        record = json.loads(Path(client.download_artifacts(
            registered.run_id, "evaluation/eval.json", tmp)).read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert rows["fid_domain"]["value"] == 10.0 and rows["fid_domain"]["se"] == 0.1
    assert rows["fid_domain"]["floor"] == 1.0 and rows["fid_domain"]["baseline"] == 1000.0
    assert rows["fid_domain"]["times_floor"] == 10.0 and rows["kid_domain"]["se"] is None
    assert record["metrics"] == METRICS
    tags = run.data.tags
    # The protocol: one packed tag and the two fields users filter runs on.
    assert EvalProtocol.from_tags(tags) == EvalProtocol(**PROTOCOL)
    assert {k for k in tags if k.startswith("eval.")} == {"eval.protocol", "eval.extractor",
                                                            "eval.n_samples"}
    assert tags["eval.extractor"] == "domain" and tags["eval.n_samples"] == "64"
    assert tags["prefect.flow_run_id"] == "flow-run-42"
    assert tags["ganpkg.params_hash"] == registered.config.params_hash()
    assert tags["ganpkg.seed"] == "0" and tags["device"] == "cpu"
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    # MLflow's own run-page fields: Source, Created by, the commit.
    assert tags["mlflow.source.git.commit"] == tags["git.commit"]
    assert tags["mlflow.user"] and tags["mlflow.source.type"] == "JOB"
    assert tags["mlflow.source.name"]
    # The run page's Datasets: the committed snapshot, where the DVC remote keeps it.
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.digest == tags["data.dvc_md5"]
    assert f"files/md5/{tags['data.dvc_md5'][:2]}/" in used.dataset.source
    assert {t.key: t.value for t in used.tags}["mlflow.data.context"] == "train"
    assert tags["data.dvc_md5"] and tags["data.prepared_md5"]
    assert tags["torch.version"].startswith("2.") and tags["train.status"] == "FINISHED"
    files = _artifacts(client, registered.run_id)
    for path in ("config/config.yaml", "logs/train.log", "status/status.json",
                 "evaluation/eval.json", "model_card/model_card.md", "model_card/samples.png"):
        assert path in files, path
    # The step slider: one sample grid image per sampling step, under the key "samples", from
    # step 0 (its first position shows the untrained generator, not "No image logged").
    grids = [f for f in files if f.startswith("images/samples+step+") and f.endswith(".png")]
    assert sorted(int(f.split("+")[2]) for f in grids) == [0, 6, 12]
    # Enlarged for MLflow's preview by a whole factor: 4×4 grid of 32 px = 138 px, ×3.
    first = next(f for f in grids if f.split("+")[2] == "0")
    logged = client.download_artifacts(registered.run_id, first, str(registered.root))
    on_disk = registered.root / "run" / "samples" / "step-00000000.png"
    assert Image.open(logged).size == tuple(3 * x for x in Image.open(on_disk).size) == (414, 414)
    log = client.download_artifacts(registered.run_id, "logs/train.log", str(registered.root))
    assert "step 12 checkpoint" in Path(log).read_text()


def _artifacts(client, run_id, path=None):
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_diverged_training_marks_the_run_failed(store, tiny_overrides):
    config = load_config(None, tiny_overrides + ["train.max_abs_loss=0.001"])
    tracker = MlflowTracker(config, tracking_uri=store, system_metrics=False)
    with pytest.raises(TrainingDiverged):
        train(config, [tracker])
    run = MlflowClient(store).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["train.status"] == "FAILED"
    assert "status/status.json" in _artifacts(MlflowClient(store), tracker.run_id)


def test_resumed_training_continues_its_run(store, tiny_overrides):
    config = load_config(None, tiny_overrides + ["train.total_steps=4"])
    first = MlflowTracker(config, tracking_uri=store, system_metrics=False)
    train(config, [first])
    longer = load_config(None, tiny_overrides + ["train.total_steps=8"])
    second = MlflowTracker(longer, tracking_uri=store, system_metrics=False)
    train(longer, [second])
    assert second.run_id == first.run_id
    run = MlflowClient(store).get_run(first.run_id)
    assert run.data.params["train.total_steps"] == "4"  # params are immutable …
    assert run.data.tags["resume.train.total_steps"] == "8"  # … so the change is a tag
    steps = [m.step for m in MlflowClient(store).get_metric_history(first.run_id, "train/loss_d")]
    assert steps == [2, 4, 6, 8]


def test_ganpkg_never_imports_mlflow():
    # The CLI with every command registered (the registry commands import pipelines lazily).
    code = ("import sys, pipelines.cli; "
            "bad = [m for m in ('mlflow', 'prefect', 'dvc') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
