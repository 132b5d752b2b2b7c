"""`ganpkg sweep`: trials as parallel flow runs nested under one MLflow parent run; the best
trial is registered and gated like a retrain (real Prefect server, sqlite MLflow, real DVC)."""

import json
import math
import os
import subprocess
import sys

from prefect.client.orchestration import get_client as prefect_client

from ganpkg.config import RegistryConfig, load_config
from ganpkg.sweep import sweep_trials
from pipelines.sweep import best_trial, collect_trials, sweep
from pipelines.tracking import RUN_ID_FILE, get_client

METRIC = "fid_domain"  # registry.primary_metric of the tiny project (lower is better)


def test_two_trials_nest_under_one_parent_and_the_better_one_is_registered(project):
    state = sweep(trials=[["train.lr_g=1e-4"], ["train.lr_g=3e-4"]], return_state=True)
    outcome = state.result()
    sweep_run_id = str(state.state_details.flow_run_id)
    client = get_client()
    parent = client.get_run(outcome["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_id"] == sweep_run_id
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    assert {c.data.params["train.lr_g"] for c in children} == {"0.0001", "0.0003"}
    assert len({c.data.tags["train.run_dir"] for c in children}) == 2
    scores = {c.info.run_id: c.data.metrics[f"eval/{METRIC}"] for c in children}
    assert all(math.isfinite(v) for v in scores.values()), scores
    best = min(scores, key=scores.get)

    # Each trial was a flow run of its own, started by a task of the sweep's flow run.
    with prefect_client(sync_client=True) as prefect:
        trial_runs = [prefect.read_flow_run(c.data.tags["prefect.flow_run_id"]) for c in children]
    assert all(r.parent_task_run_id is not None and r.state.is_completed() for r in trial_runs)
    assert sweep_run_id not in {str(r.id) for r in trial_runs}

    versions = client.search_model_versions("name='ganpkg-generator'")
    assert len(versions) == 1 and versions[0].run_id == best
    assert client.get_model_version_by_alias("ganpkg-generator", "champion").run_id == best
    assert outcome["alias"] == "champion" and outcome["run_id"] == best
    assert parent.data.tags["sweep.best_run_id"] == best
    table = client.load_table(parent.info.experiment_id, "sweep/trials.json",
                              run_ids=[parent.info.run_id])
    assert sorted(table["status"]) == ["finished", "finished"]


def ganpkg_cli(*args):
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps help to the terminal width
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_sweep_cli_explains_itself_and_refuses_bad_entries_in_one_line():
    help_ = ganpkg_cli("sweep", "--help")
    assert help_.returncode == 0
    for word in ("--grid", "--trial", "--max-parallel", "nested", "primary_metric"):
        assert word in help_.stdout, word

    for args, named in ((["--grid", "train.lr_g"], "train.lr_g"),
                        (["--grid", "train.lr_gg=1,2"], "train.lr_gg"),
                        (["--trial", "data.resolution=64"], "data.resolution")):
        bad = ganpkg_cli("sweep", *args)
        assert bad.returncode == 2, bad.stderr
        assert named in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_grid_is_a_cross_product_and_trials_follow_it():
    trials = sweep_trials(["train.lr_g=1e-4,2e-4", "model.g_width=16,32"],
                          ["train.seed=1 'train.lr_d=1e-3'"])
    assert trials == [["train.lr_g=1e-4", "model.g_width=16"], ["train.lr_g=1e-4", "model.g_width=32"],
                      ["train.lr_g=2e-4", "model.g_width=16"], ["train.lr_g=2e-4", "model.g_width=32"],
                      ["train.seed=1", "train.lr_d=1e-3"]]


class Settled:
    """A finished future: its result, or its exception."""

    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


def test_a_failed_trial_is_reported_and_the_best_follows_the_metric_direction(tmp_path):
    configs = [load_config(None, [f"train.run_dir={tmp_path / str(i)}"]) for i in range(3)]
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / RUN_ID_FILE).write_text(json.dumps({"run_id": "r1"}))
    futures = [Settled({"run_id": "r0", "metrics": {"fid_domain": 9.0}}),
               Settled(error=RuntimeError("exited with code 1: diverged\nlast lines")),
               Settled({"run_id": "r2", "metrics": {"fid_domain": 5.0}})]
    rows, results = collect_trials(futures, [["a=0"], ["a=1"], ["a=2"]], configs, "fid_domain")
    assert [r["status"] for r in rows] == ["finished", "failed", "finished"]
    assert rows[1]["run_id"] == "r1" and results[1] is None
    assert rows[1]["error"] == "RuntimeError: exited with code 1: diverged"
    assert best_trial(rows, RegistryConfig(primary_metric=METRIC)) == 2  # fid: lower is better
    higher = [{**r, "is_domain": r.pop("fid_domain")} for r in rows]
    assert best_trial(higher, RegistryConfig(primary_metric="is_domain")) == 0
    failed = [{**r, "status": "failed"} for r in rows]
    assert best_trial(failed, RegistryConfig(primary_metric=METRIC)) is None
