"""Using the registry: sample by alias in a fresh process, trace lineage, reproduce, compare."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from mlflow import MlflowClient
from PIL import Image
from registry_helpers import METRICS, PROTOCOL

from ganpkg.checkpoint import load_generator
from ganpkg.config import load_config
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.training import train
from pipelines.leaderboard import format_table, leaderboard, write_csv
from pipelines.lineage import download_config, format_lineage, lineage
from pipelines.registry_load import using_tracking_uri

CHAMPION = "models:/ganpkg-generator@champion"


def _env(uri):
    return dict(os.environ, MLFLOW_TRACKING_URI=uri)


def test_version_is_pt2_with_signature_card_and_lineage_tags(registered):
    client = MlflowClient(registered.uri)
    mv = client.get_model_version_by_alias("ganpkg-generator", "champion")
    assert str(mv.version) == registered.version and "champion" in mv.aliases
    # Version tags: what users filter on (and the gate and the retrain policy read), no more.
    assert {k for k in mv.tags if not k.startswith(("metric.", "gate."))} == {
        "git.commit", "data.dvc_md5", "ganpkg.result_hash", "eval.protocol", "checkpoint.step"}
    for key in ("metric.fid_domain", "gate.decision", "gate.reason", "gate.rule"):
        assert mv.tags.get(key), key
    assert EvalProtocol.from_tags(mv.tags) == EvalProtocol(**PROTOCOL)
    assert "| fid_domain | 10 |" in mv.description  # the model card, with the full lineage
    for key in ("torch.version", "prefect.flow_run_id", "data.prepared_md5", "ganpkg.seed"):
        assert f"| {key} |" in mv.description, key
    # MLflow 3's logged-model page: linked to this version, with the evaluation's metrics.
    model = client.get_logged_model(mv.model_id or mv.source.removeprefix("models:/"))
    assert {"name": "ganpkg-generator", "version": str(mv.version)} in json.loads(
        model.tags["mlflow.modelVersions"])
    shown = {m.key: m for m in model.metrics}
    assert shown["eval/fid_domain"].value == METRICS["fid_domain"]
    assert shown["eval/fid_domain"].dataset_digest == PROTOCOL["reference_md5"]
    local = client.download_artifacts(registered.run_id, "model_card", str(registered.root))
    card = Path(local, "model_card.md").read_text()
    assert f"![samples](/get-artifact?path=model_card%2Fsamples.png&run_uuid={registered.run_id})" \
        in card
    from mlflow.models import get_model_info

    with using_tracking_uri(registered.uri):
        info = get_model_info(f"models:/ganpkg-generator/{mv.version}")
    assert info.flavors["pytorch"]  # and no pickle: the model data is one torch.export archive
    assert info.signature.inputs.inputs[0].shape == (-1, 16)
    assert info.signature.outputs.inputs[0].shape == (-1, 1, 32, 32)
    assert info.saved_input_example_info is not None
    # Servable as MLflow's generic pyfunc (what `mlflow models serve` runs): numpy z in.
    import mlflow.pyfunc
    import numpy as np

    with using_tracking_uri(registered.uri):
        served = mlflow.pyfunc.load_model(f"models:/ganpkg-generator/{mv.version}")
    out = served.predict(np.random.default_rng(0).standard_normal((3, 16), dtype=np.float32))
    assert np.asarray(out).shape == (3, 1, 32, 32)


def test_sample_by_alias_in_a_fresh_process_with_only_mlflow_and_torch(registered, tmp_path):
    # One fresh process (imports cost seconds): first the loader alone, which must not import
    # any ganpkg module, then `ganpkg sample --model URI` itself.
    out = tmp_path / "grid.png"
    code = ("import sys, torch; from pipelines.registry_load import load_registered_generator; "
            f"g, z = load_registered_generator({CHAMPION!r}); "
            "x = g(torch.randn(5, z)); assert x.shape == (5, 1, 32, 32), x.shape; "
            "assert float(x.abs().max()) <= 1; "
            "bad = [m for m in sys.modules if m.startswith('ganpkg')]; assert not bad, bad; "
            f"sys.argv = ['ganpkg', 'sample', '--model', {CHAMPION!r}, '--n', '9', "
            f"'--out', {str(out)!r}]; "
            "from pipelines.cli import main; main()")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(registered.uri),
                   cwd=tmp_path)
    assert Image.open(out).size == (3 * 34 + 2, 3 * 34 + 2)  # 3×3 grid of 32² + padding


def test_lineage_then_reproduce_on_cpu_gives_bit_identical_weights(registered, tmp_path):
    info = lineage(CHAMPION, registered.uri)
    assert info["model"]["version"] == registered.version
    assert info["run"]["id"] == registered.run_id
    assert info["flow_run_id"] == "flow-run-42"
    assert info["params_hash"] == registered.config.params_hash()
    assert info["metrics"]["fid_domain"] == 10.0 and info["protocol"]["extractor"] == "domain"
    text = format_lineage(info)
    for needle in ("data.dvc md5", "commit", "flow run   flow-run-42", "ganpkg train --config"):
        assert needle in text, needle
    # Reproduce from what the lineage gives: the resolved config, a new run dir, CPU.
    path = download_config(CHAMPION, tmp_path / "reproduce.yaml", registered.uri)
    assert yaml.safe_load(path.read_text())["model"]["z_dim"] == 16
    config = load_config(path, [f"train.run_dir={tmp_path / 'again'}", "train.device=cpu"])
    assert config.params_hash() == registered.config.params_hash()  # run_dir is not hashed
    result = train(config)
    again, _ = load_generator(result.checkpoint)
    from pipelines.registry_load import load_registered_generator

    registered_g, _ = load_registered_generator(CHAMPION, registered.uri)
    theirs = registered_g.program.state_dict()
    mine = again.state_dict()
    compared = [k for k in mine if k in theirs]
    assert len(compared) >= len(list(again.parameters()))
    for key in compared:
        assert torch.equal(mine[key], theirs[key]), key


def test_leaderboard_lists_runs_with_versions_and_sorts_by_metric(registered, tmp_path):
    table = leaderboard(registered.uri, sort_by="fid_domain")
    row = table[table["run_id"] == registered.run_id[:8]].iloc[0]
    assert row["fid_domain"] == 10.0 and row["extractor"] == "domain"
    # the statistics beside a value, from the run's eval.json (they are no run metrics)
    assert row["fid_domain_se"] == 0.1 and row["fid_domain_floor"] == 1.0
    assert row["ref_md5"] == "cd" * 4 and row["ref_split"] == "all"  # the packed protocol
    assert registered.version in row["versions"].split(",")
    assert "champion" in row["aliases"]
    assert row["data_md5"] and row["commit"]
    assert "fid_domain" in format_table(table)
    csv = write_csv(table, tmp_path / "board.csv")
    assert "fid_domain" in csv.read_text().splitlines()[0]
    import pytest

    from ganpkg.errors import UserError

    with pytest.raises(UserError, match="available: fid_domain"):
        leaderboard(registered.uri, sort_by="fid_nope")
