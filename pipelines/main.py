"""What `ganpkg run` prints when the flow ends: the outcome and where to look next."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
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
        console.print(f"  {summary.describe()}", highlight=False, soft_wrap=True)
    seconds = outcome.get("seconds", {})
    if seconds:
        stages = {k: v for k, v in seconds.items() if k != "flow"}
        console.print("  stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in stages.items()))
    if "flow" in seconds:
        # Data sync and preparation run once per data version (DVC skips them after); the
        # flow's own overhead is what neither they nor the stages account for.
        once = seconds.get("data", 0)
        own = seconds["flow"] - sum(v for k, v in seconds.items() if k != "flow")
        console.print(f"  flow {seconds['flow']:.0f}s: data {once:.0f}s (once per data "
                      f"version), Prefect and the rest {own:.0f}s "
                      f"({100 * own / seconds['flow']:.1f}%)", highlight=False)
    server = os.environ.get("MLFLOW_TRACKING_URI", "")
    # The MLflow run, not Prefect's flow run: `ganpkg run`'s temporary Prefect server has no
    # UI and stops at exit (Prefect's own "View at" line is switched off for it).
    url = outcome.get("mlflow_url") or server or "http://127.0.0.1:5000"
    if server.startswith(("http://", "https://")):  # `make ui` would show the local store
        console.print(f"look at it:   {url}", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(f"look at it:   make ui, then open {url}", highlight=False, markup=False,
                      soft_wrap=True)
    # soft_wrap: a log at 80 columns keeps the command on one line, copy-pasteable.
    console.print(f"sample it:    {this_command()} sample --model "
                  f"models:/{outcome['name']}@champion --n 64 --out grid.png",
                  highlight=False, markup=False, soft_wrap=True)


def this_command() -> str:
    """How to call ganpkg again from this shell: the path the user ran, relative to the
    working directory when under it (`make run` puts .venv/bin on its own PATH only, so a bare
    `ganpkg` would not run in the user's shell), else `ganpkg` when that is the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "ganpkg":  # python -m pipelines, or a test
        return shlex.quote(sys.executable) + " -m pipelines"
    try:
        return shlex.quote(str(argv0.absolute().relative_to(Path.cwd())))
    except ValueError:
        found = shutil.which("ganpkg")
        if found and Path(found).resolve() == argv0.resolve():
            return "ganpkg"
        return shlex.quote(str(argv0))
