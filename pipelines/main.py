"""What `ganpkg run` prints when the flow ends: the outcome and where to look next."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

from ganpkg.metrics import summarize


def print_outcome(outcome: dict[str, Any], console: Console) -> None:
    """One short summary: skipped (why) or the registered version, its alias and metrics."""
    if outcome.get("status") == "skipped":
        console.print(f"[bold]nothing changed[/]: {outcome['reason']}")
        return
    console.print(f"[bold]registered[/] {outcome['name']} v{outcome['version']} → "
                  f"@{outcome['alias']} ({outcome['reason']})")
    for summary in summarize(outcome.get("metrics", {})):
        console.print(f"  {summary.describe()}", highlight=False)
    seconds = outcome.get("seconds", {})
    if seconds:
        stages = {k: v for k, v in seconds.items() if k != "flow"}
        console.print("  stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in stages.items()))
    if "flow" in seconds:
        # The flow's own overhead: its wall time less the time inside train and evaluate.
        own = seconds["flow"] - seconds.get("train", 0) - seconds.get("evaluate", 0)
        console.print(f"  flow {seconds['flow']:.0f}s, of which outside train and evaluate "
                      f"{own:.0f}s ({100 * own / seconds['flow']:.1f}%)")
    server = os.environ.get("MLFLOW_TRACKING_URI", "")
    if server.startswith(("http://", "https://")):  # `make ui` would show the local store
        console.print(f"look at it:   {server}   (MLflow UI of the tracking server)")
    else:
        console.print("look at it:   make ui   (MLflow UI on http://127.0.0.1:5000)")
    console.print(f"sample it:    .venv/bin/ganpkg sample --model "
                  f"models:/{outcome['name']}@champion --n 64 --out grid.png")
