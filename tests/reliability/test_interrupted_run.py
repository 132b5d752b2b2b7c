"""`ganpkg run` killed: kill -9 leaves an unfinished run the next `ganpkg run` resumes (same run
directory, same MLflow run); SIGTERM stops its children, marks the MLflow run KILLED and exits
130 with one line. Real command line in subprocesses, each with Prefect's temporary server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GANPKG = str(Path(sys.executable).with_name("ganpkg"))

# tests/pipelines' throw-away project builder, loaded by path (conftest files share one name).
_spec = importlib.util.spec_from_file_location(
    "_ganpkg_pipelines_conftest", Path(__file__).parents[1] / "pipelines" / "conftest.py")
_project = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_project)


def start(project: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
               PREFECT_HOME=str(project / ".prefect"), OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    # Its own session: the test can see (and at the end kill) everything it started.
    return subprocess.Popen([GANPKG, "run"], cwd=project, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, what: str, proc: subprocess.Popen, log: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"ganpkg run exited {proc.returncode} before {what}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()}")


def steps(run_root: Path) -> dict[Path, int]:
    """Each run directory under RUN_ROOT with the step of its newest checkpoint."""
    found = {}
    for ckpt in run_root.glob("*/checkpoints/step-*.pt"):
        found[ckpt.parents[1]] = max(found.get(ckpt.parents[1], 0), int(ckpt.stem.split("-")[1]))
    return found


def session_alive(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "sid=,pid=,args="], capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.split()[0] == str(sid)]


def mlflow_status(project: Path, run_dir: Path) -> str:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(run_id).info.status


def test_killed_run_resumes_and_sigterm_closes_it(tmp_path):
    project = _project.make_project(tmp_path)
    # Long enough that both runs are killed mid-training.
    _project.write_params(project, train={"total_steps": 1_000_000, "log_every_steps": 50})
    run_root = project / "runs" / "tiny"

    first_log = tmp_path / "first.log"
    first = start(project, first_log)
    try:
        found = wait_for(lambda: steps(run_root), "a checkpoint", first, first_log)
        (run_dir, step), = found.items()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # its orphaned temporary server (see the note)
    assert mlflow_status(project, run_dir) == "RUNNING"  # nobody could close it

    second_log = tmp_path / "second.log"
    second = start(project, second_log)
    try:
        wait_for(lambda: "resuming the interrupted run" in second_log.read_text(),
                 "the resume line", second, second_log)
        # It trains on in the same directory from the checkpoint kill -9 left.
        wait_for(lambda: steps(run_root).get(run_dir, 0) > step + 8, "a newer checkpoint",
                 second, second_log)
        assert list(steps(run_root)) == [run_dir]
        os.kill(second.pid, signal.SIGTERM)
        assert second.wait(90) == 130
        time.sleep(1)
        assert session_alive(second.pid) == []  # the temporary server stopped with it
    finally:
        if session_alive(second.pid):
            os.killpg(second.pid, signal.SIGKILL)
    out = second_log.read_text()
    assert "Traceback" not in out, out
    # Prefect's "View at" would point at the temporary server, which has no UI and is gone.
    assert "Beginning flow run" in out and "View at" not in out, out
    # One line (Prefect's own "Stopping temporary server" may follow it at exit).
    assert sum(line.startswith("interrupted:") for line in out.splitlines()) == 1, out
    assert mlflow_status(project, run_dir) == "KILLED"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "KILLED"
