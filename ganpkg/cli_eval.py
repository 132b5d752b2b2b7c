"""`ganpkg` commands of the eval stage: `evaluate` and `train-extractor`."""

# No `from __future__ import annotations`: Typer reads the option types from the annotations,
# and ConfigOpt/SetOpt are imported inside register() (ganpkg.cli imports this module).
from pathlib import Path
from typing import Annotated

import typer


def _table(result, info: dict):
    """Rich table: metrics, then the protocol they were measured with."""
    from rich.table import Table

    table = Table(title=f"checkpoint step {info.get('step')}: {info.get('path')}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.6g}")
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


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    from ganpkg.cli import ConfigOpt, SetOpt

    @app.command()
    def evaluate(
        checkpoint: Annotated[Path, typer.Option(help="A ganpkg checkpoint (.pt); its EMA "
                                                      "generator is evaluated.")],
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
        out: Annotated[Path | None, typer.Option(
            help="Folder for eval.json and the memorization pairs PNG "
                 "(default: <checkpoint name>-eval/ beside the checkpoint).")] = None,
    ) -> None:
        """FID/IS/KID/PR (torch-fidelity, in memory) + memorization check, with the protocol."""
        import yaml
        from rich.console import Console

        from ganpkg.cli import console, resolve_config
        from ganpkg.evaluation.fidelity import evaluate_checkpoint

        cfg = resolve_config(config, set_)
        console.print(yaml.safe_dump({"data": {"prepared_dir": cfg.data.prepared_dir},
                                      "eval": cfg.eval.model_dump(mode="json")}, sort_keys=False),
                      highlight=False)
        out = out or checkpoint.with_name(f"{checkpoint.stem}-eval")
        result, info = evaluate_checkpoint(checkpoint, cfg, out_dir=out)
        Console().print(_table(result, info))
        console.print(f"written: {out / 'eval.json'}")

    @app.command("train-extractor")
    def train_extractor(
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
    ) -> None:
        """Train the domain feature extractor on the prepared labels (dvc stage train_extractor)."""
        from ganpkg.cli import console, resolve_config
        from ganpkg.data.prepared import open_prepared
        from ganpkg.evaluation.extractor_domain import train_domain_extractor

        cfg = resolve_config(config, set_)
        dataset = open_prepared(cfg.data.prepared_dir)
        # Not eval.device: the stage's params would then rerun it when only evaluation moves.
        info = train_domain_extractor(dataset, cfg.eval)
        console.print(f"domain extractor: test accuracy {info['test_accuracy']:.4f} on "
                      f"{info['n_test']} held-out images → {info['weights']} "
                      f"(sha256 {info['sha256'][:12]}…)", highlight=False)
