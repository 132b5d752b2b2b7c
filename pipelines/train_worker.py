"""Training in child processes: ``launch`` (the flow task's side) and ``main`` (each rank's).

The train task calls ``launch`` when ``train.nproc_per_node`` > 1: torchrun starts N ranks of
``python -m pipelines.train_worker``. Sweeps launch one plain process per trial too, because
trials training in threads of one process would share torch's global RNG (weight init races).

The task creates (or resumes) the MLflow run; rank 0 attaches an MlflowTracker to it, so
metrics, samples and checkpoints reach MLflow as in-process training does, and writes
``RESULT_FILE`` for the task; the other ranks only compute.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

RESULT_FILE = "train_result.json"  # in train.run_dir, written by rank 0 when training finished
LOG_FILE = "worker.log"  # every rank's stdout and stderr
TAIL_LINES = 30
# The line a Python traceback ends with, e.g. "ganpkg.training.TrainingDiverged: training ..."
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Diverged|Fault): \S.*)$")


def worker_command(nproc: int) -> list[str]:
    """torchrun (the one installed beside this Python) for several ranks, else plain Python."""
    if nproc == 1:
        return [sys.executable, "-m", "pipelines.train_worker"]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        raise RuntimeError(f"torchrun not found beside {sys.executable}; install torch there")
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m", "pipelines.train_worker"]


def launch(config, tracker, flow_run_id: str | None, lineage: dict[str, Any] | None,
           fault_at_step: int | None = None) -> dict[str, Any]:
    """Train in child processes; returns the train task's dict (run_id, checkpoint, step).

    A non-zero exit marks the MLflow run FAILED and raises with the output's last lines.
    """
    from ganpkg.config import save_config

    run_dir = Path(config.train.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker.open_run(run_dir)  # the run exists before the ranks start: a retry finds it again
    config_path = run_dir / "config.yaml"
    save_config(config, config_path)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)  # a stale one must not pass for this run's
    cmd = worker_command(config.train.nproc_per_node) + [
        "--config", str(config_path), "--run-id", tracker.run_id,
        "--tracking-uri", tracker.client.tracking_uri, "--lineage", json.dumps(lineage or {})]
    if flow_run_id:
        cmd += ["--flow-run-id", flow_run_id]
    if fault_at_step is not None:
        cmd += ["--fault-at-step", str(fault_at_step)]
    log = run_dir / LOG_FILE
    with log.open("w") as out:
        code = run_group(cmd, out)
    if code != 0:
        client = tracker.client
        client.log_artifact(tracker.run_id, str(log), "logs")
        client.set_tag(tracker.run_id, "train.status", "FAILED")
        client.set_terminated(tracker.run_id, "FAILED")
        lines = log.read_text(errors="replace").splitlines()
        causes = [m.group(1) for m in map(_EXCEPTION_LINE.match, lines) if m]
        tail = "\n".join(lines[-TAIL_LINES:])
        raise RuntimeError(f"training processes exited with code {code}: "
                           f"{causes[-1] if causes else 'see below'}\n{log}, last lines:\n{tail}")
    result = json.loads((run_dir / RESULT_FILE).read_text())
    return {"run_id": tracker.run_id, "checkpoint": result["checkpoint"], "step": result["step"]}


def run_group(cmd: list[str], out) -> int:
    """Run ``cmd`` in a process group of its own and return its exit code; when this process is
    interrupted (Ctrl-C, SIGTERM), the whole group (torchrun and its ranks) is stopped first."""
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
                break
        raise


def main(argv: list[str] | None = None) -> None:
    """One rank: train the saved config; rank 0 logs to the given MLflow run."""
    from torch.distributed.elastic.multiprocessing.errors import record

    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    # record: a failing rank's traceback goes to torchrun's summary (the output's last lines).
    app.command(help="One training rank (started by the train task, not by hand).")(record(rank))
    app(args=argv, prog_name="python -m pipelines.train_worker", standalone_mode=True)


def rank(  # one torchrun rank (or the sweep's one plain process)
    config: Annotated[Path, typer.Option(help="resolved config (YAML)")],
    run_id: Annotated[str, typer.Option(help="MLflow run that rank 0 logs to")],
    tracking_uri: Annotated[str, typer.Option(help="MLflow tracking URI")],
    lineage: Annotated[str, typer.Option(help="the flow's data lineage (JSON)")] = "{}",
    flow_run_id: Annotated[str | None, typer.Option(help="the Prefect flow run")] = None,
    fault_at_step: Annotated[int | None, typer.Option(help="tests: fail once here")] = None,
) -> None:
    from ganpkg.config import load_config
    from ganpkg.training import train

    cfg = load_config(config)
    rank_ = int(os.environ.get("RANK", "0"))
    callbacks = []
    if rank_ == 0:
        from ganpkg.evaluation.progress import progress_callbacks
        from pipelines.tracking import MlflowTracker

        tracker = MlflowTracker(cfg, tracking_uri=tracking_uri, flow_run_id=flow_run_id,
                                data_lineage=json.loads(lineage), run_id=run_id)
        callbacks += [tracker, *progress_callbacks(cfg, [tracker])]
        if fault_at_step is not None:
            from pipelines.faults import FaultOnce  # torchrun stops the other ranks with it

            callbacks.append(FaultOnce(fault_at_step, Path(cfg.train.run_dir)))
    result = train(cfg, callbacks)
    if rank_ == 0:
        body = {"checkpoint": str(result.checkpoint), "step": result.step,
                "status": result.status, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        (Path(cfg.train.run_dir) / RESULT_FILE).write_text(json.dumps(body, indent=2))


if __name__ == "__main__":
    main()
