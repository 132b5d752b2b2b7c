"""`ganpkg data ingest` and `ganpkg data prepare`: the data stage's commands."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ganpkg.cli_common import ConfigOpt, SetOpt, console, resolve_config


def _resolve(config: Path, overrides: list[str] | None):
    cfg = resolve_config(config, overrides)
    # Resolve and print before any work, so a log always shows what ran.
    console.print("[bold]data[/] " + yaml.safe_dump(cfg.data.model_dump(mode="json"),
                                                    default_flow_style=True, width=10_000).strip(),
                  highlight=False, soft_wrap=True)
    return cfg


def ingest_command(config: ConfigOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Copy the source (data.source) into data/ deterministically: the raw snapshot data.dvc tracks."""
    from ganpkg.data.ingest import ingest

    cfg = _resolve(config, overrides)
    with console.status(f"ingesting {cfg.data.source} into {cfg.data.raw_dir}/"):
        result = ingest(cfg.data, log=lambda line: console.print(line, highlight=False))
    console.print(
        f"ingest: {result.files} files ({result.total_bytes / 1e6:.1f} MB) from {result.source} "
        f"into {result.raw_dir}/, {len(result.skipped)} skipped; "
        f"snapshot.json md5 {result.snapshot_md5}",
        highlight=False, soft_wrap=True,
    )


def prepare_command(config: ConfigOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Decode, convert and resize data/ into prepared/ (uint8 N×C×H×W memmap + manifest.json)."""
    from ganpkg.data.prepare import prepare

    cfg = _resolve(config, overrides)
    columns = (TextColumn("prepare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("prepare", total=None)
        result = prepare(cfg.data, progress=lambda done, total: bar.update(
            task, completed=done, total=total))
    for item in result.rejected[:10]:
        console.print(f"rejected {item['path']}: {item['reason']}", highlight=False,
                      soft_wrap=True)
    more = len(result.rejected) - 10
    if more > 0:
        console.print(f"… and {more} more (all listed in {result.prepared_dir}/manifest.json)")
    n, c, h, w = result.shape
    console.print(
        f"prepare: {result.accepted} accepted, {len(result.rejected)} rejected → "
        f"{result.prepared_dir}/ {n}×{c}×{h}×{w} uint8 ({result.manifest['resize_filter']})",
        highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    data_app = typer.Typer(help="Data: ingest the source into data/, prepare data/ → prepared/.",
                           no_args_is_help=True)
    data_app.command("ingest")(ingest_command)
    data_app.command("prepare")(prepare_command)
    app.add_typer(data_app, name="data")
