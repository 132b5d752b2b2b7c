"""The retrain flow end to end on a tiny project: real Prefect server, sqlite MLflow, real DVC."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import write_params
from prefect.client.orchestration import get_client as prefect_client

from ganpkg.checkpoint import load_checkpoint
from pipelines.faults import FAULT_ENV
from pipelines.flows import retrain
from pipelines.tracking import get_client


def champion(name="ganpkg-generator"):
    return get_client().get_model_version_by_alias(name, "champion")


def artifacts_of(flow_run_id):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def log_lines(flow_run_id):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs travel in batches
    with prefect_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return [log.message for log in logs if log.name.startswith("ganpkg")]


def test_flow_trains_registers_skips_when_unchanged_and_resumes_after_a_fault(project,
                                                                             monkeypatch):
    state = retrain(return_state=True)
    first = state.result()
    assert first["status"] == "trained" and first["alias"] == "champion", first
    version = champion()
    assert str(version.version) == first["version"]
    run = get_client().get_run(first["run_id"])
    # The MLflow run carries the flow run id, and the flow run's artifacts link the run.
    assert run.data.tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    keys = {a.key for a in artifacts_of(state.state_details.flow_run_id)}
    assert {"retrain-report", "retrain-metrics", "mlflow-run"} <= keys
    # One name for the flow run, its run directory and its MLflow run.
    with prefect_client(sync_client=True) as prefect:
        flow_run_name = prefect.read_flow_run(state.state_details.flow_run_id).name
    assert run.info.run_name == flow_run_name
    assert run.data.tags["checkpoint.latest"].split("/")[-3] == flow_run_name
    # Training's own step lines reach the flow run's logs, not only the terminal.
    # with the total and the time left, and DVC's stage output as it runs.
    lines = log_lines(state.state_details.flow_run_id)
    assert any(line.startswith("step 12/12 (100%") for line in lines), lines[:20]
    assert any(line.startswith("dvc: Running stage 'prepare'") for line in lines), lines[:20]
    assert any(k.startswith("fid_") for k in first["metrics"])
    # The FID curve: a point at each checkpoint, and the version says which step it is and why.
    curve = get_client().get_metric_history(first["run_id"], "eval/progress/fid_domain")
    assert sorted(m.step for m in curve) == [4, 8, 12]
    assert any(line.startswith("step 12 fid_domain ") for line in lines), lines
    assert version.tags["checkpoint.step"] in ("4", "8", "12")
    assert version.tags["checkpoint.chosen"].startswith(("best step", "last checkpoint"))

    # `dvc metrics show` has the champion's version and metrics.
    shown = subprocess.run([str(Path(sys.executable).with_name("dvc")), "metrics", "show",
                            "--json"], capture_output=True, text=True, check=True).stdout
    champion_json = json.loads(shown)[""]["data"]["champion.json"]["data"]
    assert champion_json["version"] == int(first["version"])
    assert champion_json["fid_domain"] == pytest.approx(first["metrics"]["fid_domain"])
    # every value the evaluation recorded, not only the gate's inputs (the version's tags)
    assert {k: champion_json.get(k) for k in first["metrics"]} == pytest.approx(first["metrics"])

    # Same data, same params: the flow ends early and says why.
    again = retrain()
    assert again["status"] == "skipped" and "use --force" in again["reason"]

    # A crash mid-training is retried by Prefect and resumes from the last checkpoint; the
    # generator is bit-identical to the unfailed run's.
    monkeypatch.setenv(FAULT_ENV, "6")
    faulty = retrain(force=True)
    monkeypatch.delenv(FAULT_ENV)
    assert faulty["status"] == "trained"
    names = {get_client().get_run(r["run_id"]).info.run_name for r in (first, faulty)}
    assert len(names) == 2  # a seeded training no longer makes MLflow repeat its run names
    ckpt_a = load_checkpoint(get_client().get_run(first["run_id"]).data.tags["checkpoint.latest"])
    ckpt_b = load_checkpoint(get_client().get_run(faulty["run_id"]).data.tags["checkpoint.latest"])
    for name, tensor in ckpt_a["g_ema"].items():
        assert torch.equal(tensor, ckpt_b["g_ema"][name]), name
    # Measuring the curve during training does not change what is trained.
    plain = retrain(overrides=["eval.progress_n_samples=0"], force=True)
    ckpt_c = load_checkpoint(get_client().get_run(plain["run_id"]).data.tags["checkpoint.latest"])
    for name, tensor in ckpt_a["g_ema"].items():
        assert torch.equal(tensor, ckpt_c["g_ema"][name]), name
    assert get_client().get_metric_history(plain["run_id"], "eval/progress/fid_domain") == []
    assert (project / "runs").exists()


def test_failed_training_fails_the_flow_and_leaves_the_registry_alone(project):
    write_params(project, train={"lr_g": 1e30, "lr_d": 1e30})
    state = retrain(return_state=True, force=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="diverged"):
        state.result()
    client = get_client()
    assert client.search_model_versions("name='ganpkg-generator'") == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs)


def test_two_flows_finishing_together_leave_one_consistent_champion(project):
    results = []

    def run():
        results.append(retrain(force=True))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(r["status"] == "trained" for r in results)
    client = get_client()
    versions = client.search_model_versions("name='ganpkg-generator'")
    assert len(versions) == 2
    # (search results carry no aliases: read each version)
    aliases = [a for v in versions
               for a in client.get_model_version("ganpkg-generator", v.version).aliases]
    assert aliases.count("champion") == 1, aliases
    decisions = sorted(r["alias"] for r in results)
    assert decisions[0] == "challenger" or decisions == ["champion", "champion"], decisions
