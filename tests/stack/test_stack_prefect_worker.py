"""The retrain deployment of prefect.yaml on the real stack (conftest.py's, started once per
session), run by a `prefect worker` process of a process work pool: triggered through the API,
then by a data event. Runs after test_local_stack.py (name order), on the same project. Skips
only where PostgreSQL is not installed.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml
from stack_helpers import NEEDS_POSTGRES, REPO, client_env, mlflow_rest, prefect_rest

pytestmark = NEEDS_POSTGRES


def test_a_worker_runs_the_deployment_triggered_through_the_api(stack, project, tmp_path,
                                                                record_property):
    """prefect.yaml's `scheduled` deployment on the pool ganpkg-process, deployed with
    `prefect deploy`, run by `prefect worker start` (its own process) when the API asks."""
    env_vars = stack.ready()
    env = client_env(env_vars, tmp_path / "prefect-client")
    env["GANPKG_REPO_DIR"] = str(project)  # prefect.yaml's pull step: the checkout to run in
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "pipelines").symlink_to(REPO / "pipelines")  # the entrypoint's file, as in a clone
    prefect = str(Path(sys.executable).with_name("prefect"))

    def cli(*args: str) -> str:
        done = subprocess.run([prefect, "--no-prompt", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    cli("work-pool", "create", "ganpkg-process", "--type", "process",
        "--base-job-template", str(REPO / "infra/work-pools/process.json"))
    cli("deploy", "--name", "scheduled")
    api, auth = prefect_rest(env_vars)
    deployment = requests.get(f"{api}/deployments/name/retrain/scheduled", auth=auth,
                              timeout=30).json()
    assert deployment["work_pool_name"] == "ganpkg-process", deployment

    log = tmp_path / "worker.log"
    started = time.monotonic()
    with running_worker(project, env, log) as worker:
        created = requests.post(f"{api}/deployments/{deployment['id']}/create_flow_run",
                                json={"parameters": {"force": True}}, auth=auth, timeout=30)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        flow_run = finished(api, auth, run_id, worker, log)
        seconds = time.monotonic() - started
    record_property("worker_flow_seconds", round(seconds, 1))
    print(f"\nworker-executed flow run in {seconds:.1f} s")
    assert flow_run["state"]["type"] == "COMPLETED", (flow_run["state"], log.read_text()[-4000:])
    assert flow_run["work_pool_name"] == "ganpkg-process"
    assert run_id in log.read_text()  # this worker picked it up and ran it
    tags = registered_by(env_vars, project, run_id)
    assert tags["gate.decision"] in ("champion", "challenger"), tags


@contextlib.contextmanager
def running_worker(project: Path, env: dict[str, str], log: Path):
    """`prefect worker start` for the pool ganpkg-process, in its own session, stopped after."""
    prefect = str(Path(sys.executable).with_name("prefect"))
    with open(log, "w") as out:
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "ganpkg-process",
                                   "--limit", "1"], cwd=project, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield worker
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def finished(api: str, auth, run_id: str, worker: subprocess.Popen, log: Path,
             timeout: float = 480) -> dict:
    """The flow run once in a final state (or as it is when the time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = requests.get(f"{api}/flow_runs/{run_id}", auth=auth, timeout=30).json()
        if flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
        time.sleep(2)
    return flow_run


def registered_by(env_vars: dict[str, str], project: Path, flow_run_id: str) -> dict[str, str]:
    """The tags of the one version registered by this Prefect flow run (run tag
    prefect.flow_run_id), read from the authenticated MLflow server."""
    mlflow_api, auth = mlflow_rest(env_vars)
    found = requests.post(f"{mlflow_api}/runs/search", auth=auth, timeout=30, json={
        "experiment_ids": [r["experiment_id"] for r in requests.get(
            f"{mlflow_api}/experiments/search", params={"max_results": 100}, auth=auth,
            timeout=30).json()["experiments"]],
        "filter": f"tags.`prefect.flow_run_id` = '{flow_run_id}'"}).json()["runs"]
    assert len(found) == 1, found
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]
    versions = requests.get(f"{mlflow_api}/model-versions/search", auth=auth, timeout=30,
                            params={"filter": f"name='{model}'"}).json()["model_versions"]
    mine = [v for v in versions if v["run_id"] == found[0]["info"]["run_id"]]
    assert len(mine) == 1 and mine[0]["status"] == "READY", versions
    return {t["key"]: t["value"] for t in mine[0]["tags"]}


def test_new_data_starts_exactly_one_retrain_on_the_worker(stack, project, tmp_path):
    """New data accepted (`ganpkg data verify --accept-new`) emits ganpkg.data.updated; the
    deployment's trigger (prefect.yaml, deployed above) starts one flow run on the worker,
    which trains on the new data and gates a version; announcing the same md5 again
    (`ganpkg data push`) starts none."""
    from PIL import Image

    env_vars = stack.ready()
    env = client_env(env_vars, tmp_path / "prefect-client")
    env["GANPKG_REPO_DIR"] = str(project)
    api, auth = prefect_rest(env_vars)
    deployment = requests.get(f"{api}/deployments/name/retrain/scheduled", auth=auth,
                              timeout=30).json()
    assert deployment.get("id"), "the worker test deploys retrain/scheduled first"

    def runs() -> list[dict]:
        return requests.post(f"{api}/flow_runs/filter", auth=auth, timeout=30, json={
            "deployments": {"id": {"any_": [deployment["id"]]}}}).json()

    before = {r["id"] for r in runs()}
    source = project.parent / "images"  # make_project's image folder, the data source
    first = min(source.rglob("*.png"))
    Image.open(first).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(
        first.with_name("new-000.png"))
    ganpkg = str(Path(sys.executable).with_name("ganpkg"))

    def cli(*args: str) -> str:
        done = subprocess.run([ganpkg, *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=180, check=False)
        assert done.returncode == 0, f"ganpkg {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    log = tmp_path / "worker.log"
    with running_worker(project, env, log) as worker:
        cli("data", "ingest")
        said = cli("data", "verify", "--accept-new")
        md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
        assert f"announced data version {md5}" in said, said
        deadline = time.monotonic() + 120
        while not (new := [r for r in runs() if r["id"] not in before]):
            assert time.monotonic() < deadline, f"no flow run after the event:\n{said}"
            time.sleep(2)
        flow_run = finished(api, auth, new[0]["id"], worker, log)
        assert flow_run["state"]["type"] == "COMPLETED", (flow_run["state"],
                                                          log.read_text()[-4000:])
        assert "was announced before" in cli("data", "push")  # the same md5 again
        time.sleep(15)  # time for a second trigger to fire, if one would
    assert len([r for r in runs() if r["id"] not in before]) == 1
    tags = registered_by(env_vars, project, flow_run["id"])
    assert tags["data.dvc_md5"] == md5 and tags["gate.decision"], tags
