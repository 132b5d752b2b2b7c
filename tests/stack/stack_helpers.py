"""What the stack tests share: infra/local_stack.py loaded as a module, the `up` process, the
stack's REST endpoints and credentials, and the environment a client of the stack runs in."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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

# Every stack test module's pytestmark.
NEEDS_POSTGRES = pytest.mark.skipif(
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
        if self.seconds is not None:  # a later test of the session: up already
            return local_stack.read_env(self.dir)
        output, _ = self.proc.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        assert self.proc.returncode == 0, f"stack up failed:\n{output}"
        print(f"\nstack up in {self.seconds:.1f} s:\n{output}", end="")
        return local_stack.read_env(self.dir)


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
