"""`ganpkg evaluate` and `ganpkg train-extractor`: the eval stage's commands (ganpkg alone)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ganpkg.errors import UserError
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


TRAINED_EXTRACTORS = ("selfsup", "domain")
KindArg = Annotated[str, typer.Argument(
    help="selfsup: the label-free encoder (dvc stage train_selfsup); domain: the classifier "
         "on the prepared labels (dvc stage train_extractor).")]


def _pin_cpu_code_paths() -> None:
    """Re-execute this command in a process started with the CPU-independent code paths, so the
    extractor's bytes are the same on any x86-64 CPU (they are read when torch loads)."""
    from ganpkg.runtime import PINNED_CPU_ENV

    if all(os.environ.get(k) == v for k, v in PINNED_CPU_ENV.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "pipelines", *sys.argv[1:]],
              {**os.environ, **PINNED_CPU_ENV})


def train_extractor(kind: KindArg = "selfsup", config: ConfigOpt = Path("params.yaml"),
                    set_: SetOpt = None) -> None:
    """Train a feature extractor on the prepared images, bit-reproducibly on any x86-64 CPU
    (the DVC stages train_selfsup and train_extractor run this)."""
    if kind not in TRAINED_EXTRACTORS:
        raise UserError(f"train-extractor: {kind!r} unknown; allowed: "
                        f"{', '.join(TRAINED_EXTRACTORS)}")
    cfg = resolve_config(config, set_)  # a bad value answers before the re-execution
    _pin_cpu_code_paths()
    from ganpkg.data.prepared import open_prepared
    from ganpkg.evaluation.extractor_domain import train_domain_extractor
    from ganpkg.evaluation.extractor_selfsup import train_selfsup_extractor

    dataset = open_prepared(cfg.data.prepared_dir)
    start = time.monotonic()
    name = {"domain": "domain extractor", "selfsup": "label-free extractor"}[kind]
    section = getattr(cfg.eval, kind)

    def progress(done: int, total: int) -> None:  # DVC streams these lines into `ganpkg run`
        say(f"{name}: batch {done}/{total} ({100 * done // total}%, "
            f"{time.monotonic() - start:.0f}s)")

    budget = f"{section.epochs} epochs" if kind == "domain" else f"{section.steps} steps"
    say(f"{name}: training {budget} on {cfg.data.prepared_dir}")
    # Not eval.device: the stage's params would then rerun it when only evaluation moves.
    train = {"domain": train_domain_extractor, "selfsup": train_selfsup_extractor}[kind]
    info = train(dataset, cfg.eval, progress=progress)
    score = (f"test accuracy {info['test_accuracy']:.4f}" if kind == "domain" else
             f"held-out view top-1 {info['holdout_view_top1']:.4f}")
    say(f"{name}: {score} on {info['n_test']} held-out images, {info['cpu_code_paths']} CPU "
        f"code paths, {time.monotonic() - start:.0f}s → {info['weights']} "
        f"(sha256 {info['sha256'][:12]}…)")


def register(root: typer.Typer) -> None:
    """Add these commands to the main app."""
    root.command()(evaluate)
    root.command("train-extractor")(train_extractor)
