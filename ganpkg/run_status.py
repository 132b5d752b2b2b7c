"""How a run ends, for whoever reads its run_dir later: the time budget, out of memory, status.json.

``training.train`` writes ``status.json`` when a run finishes, fails or is interrupted;
``pipelines.resume`` reads it to tell an unfinished run from a finished one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ganpkg.config import TrainConfig
from ganpkg.runtime import Runtime


def time_budget_spent(t: TrainConfig, step: int, train_seconds: float, session_start: float,
                      runtime: Runtime) -> bool:
    """train.max_seconds spent (this run's resumptions together)? Read at log steps only;
    under torchrun rank 0's clock decides for all ranks (one collective per log step).

    ``train_seconds``: the earlier sessions' seconds (from the checkpoint); ``session_start``:
    ``time.perf_counter()`` when this session's training began."""
    if t.max_seconds is None or step % t.log_every_steps:
        return False
    spent = train_seconds + time.perf_counter() - session_start
    if runtime.world_size == 1:
        return spent >= t.max_seconds
    flag = torch.tensor(float(spent >= t.max_seconds), device=runtime.device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def out_of_memory(err: BaseException) -> bool:
    """An allocation the host or the GPU refused (torch raises RuntimeError on CPU)."""
    return isinstance(err, MemoryError | torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def read_status(run_dir: Path) -> dict:
    """run_dir/status.json as written by ``write_status``; {} when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: Path, status: str, step: int, message: str = "",
                 stopped_by: str | None = None) -> None:
    """run_dir/status.json: FINISHED (and which budget ended it), FAILED (why) or KILLED
    (interrupted: resumable)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    body = {"status": status, "step": step, "message": message,
            **({"stopped_by": stopped_by} if stopped_by else {})}
    (run_dir / "status.json").write_text(json.dumps(body, indent=2))
