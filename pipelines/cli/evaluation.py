"""`ganpkg evaluate` and `ganpkg train-extractor`: the eval stage's commands (ganpkg alone)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from pipelines.cli.common import ConfigOpt, SetOpt, resolve_config, say


def _table(result, info: dict) -> Table:
    """Rich table: metrics, then the protocol they were measured with."""
    from ganpkg.metrics import summarize

    def cell(value: float | None, fmt: str = ".4g") -> str:
        return "" if value is None else format(value, fmt)

    table = Table(title=f"checkpoint step {info.get('step')}: {info.get('path')}")
    table.add_column("metric", no_wrap=True)
    for name in ("value", "± se", "interval", "floor", "× floor", "baseline"):
        table.add_column(name, justify="right")
    for m in summarize(result.metrics):
        shown = "" if m.ci_low is None else f"[{m.ci_low:.4g}, {m.ci_high:.4g}]"
        table.add_row(m.name, f"{m.value:.6g}", cell(m.se, ".2g"), shown, cell(m.floor),
                      cell(m.times_floor, ".1f"), cell(m.baseline))
    table.add_section()
    for key, value in result.protocol.as_dict().items():
        shown = value[:16] + "…" if isinstance(value, str) and len(value) > 20 else value
        shown = f"{shown:.4g}" if isinstance(shown, float) else shown
        table.add_row(f"[dim]{key}[/]", f"[dim]{shown}[/]")
    mem = result.memorization
    if mem is not None:
        table.add_section()
        table.add_row("[dim]memorization threshold[/]", f"[dim]{mem.threshold:.4g}[/]")
        table.add_row("[dim]real-data baseline fraction[/]",
                      f"[dim]{mem.real_baseline_fraction:.4g}[/]")
        table.add_row("[dim]median NN distance / real's[/]", f"[dim]{mem.median_nn_ratio:.4g}[/]")
        table.add_row("[dim]closest pairs[/]", f"[dim]{mem.pairs_png}[/]")
    return table


CheckpointOpt = Annotated[Path, typer.Option(
    help="A ganpkg checkpoint (.pt); its EMA generator is evaluated.")]
EvalOutOpt = Annotated[Path | None, typer.Option(
    help="Folder for eval.json and the memorization pairs PNG "
         "(default: <checkpoint name>-eval/ beside the checkpoint).")]


def evaluate(checkpoint: CheckpointOpt, config: ConfigOpt = Path("params.yaml"),
             set_: SetOpt = None, out: EvalOutOpt = None) -> None:
    """FID/IS/KID/PR (torch-fidelity, in memory) + memorization check, with the protocol."""
    cfg = resolve_config(config, set_)  # before importing torch: a bad value answers at once
    from ganpkg.evaluation.fidelity import evaluate_checkpoint

    say(yaml.safe_dump({"data": {"prepared_dir": cfg.data.prepared_dir},
                        "eval": cfg.eval.model_dump(mode="json")}, sort_keys=False))
    out = out or checkpoint.with_name(f"{checkpoint.stem}-eval")
    result, info = evaluate_checkpoint(checkpoint, cfg, out_dir=out)
    Console().print(_table(result, info))
    say(f"written: {out / 'eval.json'}")


def train_extractor(config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Train the domain feature extractor on the prepared labels (dvc stage train_extractor)."""
    from ganpkg.data.prepared import open_prepared
    from ganpkg.evaluation.extractor_domain import train_domain_extractor

    cfg = resolve_config(config, set_)
    dataset = open_prepared(cfg.data.prepared_dir)
    start = time.monotonic()

    def progress(done: int, total: int) -> None:  # DVC streams these lines into `ganpkg run`
        say(f"domain extractor: batch {done}/{total} ({100 * done // total}%, "
            f"{time.monotonic() - start:.0f}s)")

    say(f"domain extractor: training {cfg.eval.domain.epochs} epochs on "
        f"{cfg.data.prepared_dir}")
    # Not eval.device: the stage's params would then rerun it when only evaluation moves.
    info = train_domain_extractor(dataset, cfg.eval, progress=progress)
    say(f"domain extractor: test accuracy {info['test_accuracy']:.4f} on {info['n_test']} "
        f"held-out images → {info['weights']} (sha256 {info['sha256'][:12]}…)")


def register(root: typer.Typer) -> None:
    """Add these commands to the main app."""
    root.command()(evaluate)
    root.command("train-extractor")(train_extractor)
