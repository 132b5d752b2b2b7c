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

from pipelines.flows import INTERRUPTED

GANPKG = str(Path(sys.executable).with_name("ganpkg"))

# tests/pipelines' throw-away project builder, loaded by path (conftest files share one name).
_spec = importlib.util.spec_from_file_location(
    "_ganpkg_pipelines_conftest", Path(__file__).parents[1] / "pipelines" / "conftest.py")
_project = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_project)


def start(project: Path, log: Path, **extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra)
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


def stop_at(project: Path, tmp_path: Path, where: str, sig: int, name: str) -> tuple[int, str]:
    """`ganpkg run` paused at WHERE (pipelines/faults.pause_point) and sent SIG there: its exit
    code and output. Whatever it left running (its temporary server, a dvc) is killed after."""
    log, flag = tmp_path / f"{name}.log", tmp_path / f"{name}.paused"
    proc = start(project, log, GANPKG_TEST_PAUSE_AT=where, GANPKG_TEST_PAUSE_FILE=str(flag))
    try:
        # bounded: a run that waits on a slot a killed run left would never get here
        wait_for(flag.exists, f"the pause at {where}", proc, log, timeout=180)
        os.kill(proc.pid, sig)
        code = proc.wait(90)
    finally:
        if session_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()


def versions(project: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    return sorted(client.search_model_versions(), key=lambda v: int(v.version))


def test_a_run_killed_or_stopped_at_any_stage_never_wedges_and_is_finished_by_the_next(tmp_path):
    project = _project.make_project(tmp_path)
    run_root = project / "runs" / "tiny"

    # kill -9 inside the data stage's workspace lock: the next run must not wait on it.
    assert stop_at(project, tmp_path, "data", signal.SIGKILL, "data-kill")[0] == -9

    # SIGTERM in evaluation: one line for that stage; trained, not evaluated, MLflow KILLED.
    code, out = stop_at(project, tmp_path, "evaluate", signal.SIGTERM, "eval-term")
    assert code == 130, out
    assert "Traceback" not in out, out
    said = [line for line in out.splitlines() if line.startswith("interrupted")]
    assert said == [INTERRUPTED["evaluate"]], out
    assert "evaluate and register the trained checkpoint (no retraining)" in said[0]
    (run_dir,) = steps(run_root)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "FINISHED"
    assert mlflow_status(project, run_dir) == "KILLED"
    trained_at = (run_dir / "status.json").stat().st_mtime_ns

    # kill -9 right after the version is registered, before its gate (and inside the slot).
    code, out = stop_at(project, tmp_path, "version", signal.SIGKILL, "version-kill")
    assert code == -9 and "resuming the interrupted run" in out, out
    (undecided,) = versions(project)
    assert "gate.decision" not in undecided.tags
    assert mlflow_status(project, run_dir) == "RUNNING"

    # SIGTERM before registration: that stage's line.
    code, out = stop_at(project, tmp_path, "register", signal.SIGTERM, "register-term")
    assert code == 130 and "Traceback" not in out, out
    assert "interrupted during registration" in out and mlflow_status(project, run_dir) == "KILLED"

    # SIGTERM in the data stage: that stage's line.
    code, out = stop_at(project, tmp_path, "data", signal.SIGTERM, "data-term")
    assert code == 130 and "interrupted in the data stage: nothing was trained" in out, out

    # A plain run finishes the killed one: no new training, the same version gated.
    log = tmp_path / "last.log"
    last = start(project, log)
    try:
        assert last.wait(240) == 0, log.read_text()
    finally:
        if session_alive(last.pid):
            os.killpg(last.pid, signal.SIGKILL)
    assert "resuming the interrupted run" in log.read_text()
    assert list(steps(run_root)) == [run_dir]
    assert (run_dir / "status.json").stat().st_mtime_ns >= trained_at  # rewritten, no new steps
    assert json.loads((run_dir / "status.json").read_text())["step"] == 12
    (gated,) = versions(project)
    assert gated.version == undecided.version and gated.tags["gate.decision"] in (
        "champion", "challenger")
    assert mlflow_status(project, run_dir) == "FINISHED"
    assert json.loads((run_dir / "flow.json").read_text())["stage"] == "done"
