"""The real stack on loopback (infra/local_stack.py: PostgreSQL, MLflow with basic-auth and
proxied artifacts, Prefect server on PostgreSQL) and one `ganpkg run` against it, pointed at
the servers by environment variables alone. Skips only where PostgreSQL is not installed.
"""

import importlib.util
import os
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
        output, _ = self.proc.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        assert self.proc.returncode == 0, f"stack up failed:\n{output}"
        print(f"\nstack up in {self.seconds:.1f} s:\n{output}", end="")
        return local_stack.read_env(self.dir)


@pytest.fixture
def stack(tmp_path):
    """The stack starting in tmp_path/stack; teardown runs `down --purge` and checks that every
    process it started (and their children) is gone."""
    stack = Stack(tmp_path / "stack")
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


def test_retrain_against_the_real_stack_through_env_vars_alone(stack, tmp_path,
                                                               record_property):
    project = make_project(tmp_path)  # while the stack starts
    env_vars = stack.ready()
    assert set(env_vars) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                             "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_URL"}
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(env_vars, OMP_NUM_THREADS="1", PREFECT_HOME=str(tmp_path / "prefect-client"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
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
    mlflow_api = env_vars["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow"
    auth = (env_vars["MLFLOW_TRACKING_USERNAME"], env_vars["MLFLOW_TRACKING_PASSWORD"])
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
    # The version's artifacts went through the server's artifact proxy into the stack's folder.
    assert any((stack.dir / "artifacts").rglob("MLmodel")), "no model artifacts were proxied"

    # Prefect: the server on PostgreSQL recorded a completed `retrain` flow run.
    prefect_api = env_vars["PREFECT_API_URL"]
    response = requests.post(f"{prefect_api}/flow_runs/filter", timeout=30, json={
        "flows": {"name": {"any_": ["retrain"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
    assert response.status_code == 200, response.text
    runs = response.json()
    assert len(runs) == 1, runs
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags["prefect.flow_run_id"] == runs[0]["id"], (tags, runs[0]["id"])
