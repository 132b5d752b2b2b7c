"""`ganpkg data …`: ingest the source into data/, prepare data/ → prepared/, and the DVC glue
(verify data/ against data.dvc, push, lineage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.cli.common import ConfigOpt, SetOpt, console, resolve_config, say

app = typer.Typer(help="Data: ingest the source into data/, prepare data/ → prepared/, and "
                       "the DVC glue.", no_args_is_help=True)


def _resolve(config: Path, overrides: list[str] | None):
    cfg = resolve_config(config, overrides)
    # Resolve and print before any work, so a log always shows what ran.
    say("data " + yaml.safe_dump(cfg.data.model_dump(mode="json"), default_flow_style=True,
                                 width=10_000).strip())
    return cfg


@app.command("ingest")
def ingest_command(config: ConfigOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Copy the source (data.source) into data/ deterministically: the raw snapshot data.dvc tracks."""
    from ganpkg.data.ingest import ingest

    cfg = _resolve(config, overrides)
    with console.status(f"ingesting {cfg.data.source} into {cfg.data.raw_dir}/"):
        result = ingest(cfg.data, log=say)
    say(f"ingest: {result.files} files ({result.total_bytes / 1e6:.1f} MB) from {result.source} "
        f"into {result.raw_dir}/, {len(result.skipped)} skipped; "
        f"snapshot.json md5 {result.snapshot_md5}")


@app.command("prepare")
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
        say(f"rejected {item['path']}: {item['reason']}")
    more = len(result.rejected) - 10
    if more > 0:
        say(f"… and {more} more (all listed in {result.prepared_dir}/manifest.json)")
    n, c, h, w = result.shape
    say(f"prepare: {result.accepted} accepted, {len(result.rejected)} rejected → "
        f"{result.prepared_dir}/ {n}×{c}×{h}×{w} uint8 ({result.manifest['resize_filter']})")


AcceptOpt = Annotated[bool, typer.Option(
    "--accept-new", help="data/ differs from data.dvc on purpose: record the new snapshot in "
                         "data.dvc (then commit data.dvc to git).")]


@app.command("verify")
def verify_command(accept_new: AcceptOpt = False) -> None:
    """Check data/ against the md5 committed in data.dvc (and cache it for `dvc push`).

    With --accept-new and a configured Prefect server, a new snapshot is announced as the
    event ganpkg.data.updated: the retrain deployment's trigger starts a retrain.
    """
    from pipelines.data import committed_data_md5, verify_raw_snapshot

    before = committed_data_md5()[0]
    md5 = verify_raw_snapshot(accept_new=accept_new)
    say(f"data/ matches data.dvc ({md5})")
    if md5 != before:
        from pipelines.data_events import announce_data_version

        say(announce_data_version(md5, "ganpkg data verify --accept-new"))


@app.command("push")
def push_command() -> None:
    """`dvc push`: data/ and the stages' outputs to the default DVC remote; then the data
    version is announced (ganpkg.data.updated, once per md5) to a configured Prefect server."""
    from pipelines.data import committed_data_md5, push
    from pipelines.data_events import announce_data_version

    say(push().strip() or "dvc push: nothing to push")
    md5 = committed_data_md5()[0]
    if md5:
        say(announce_data_version(md5, "ganpkg data push"))


@app.command("lineage")
def lineage_command(hash_workspace: Annotated[bool, typer.Option(
        "--hash", help="Also hash data/ and prepared/ here (slower).")] = False) -> None:
    """The data lineage a run is tagged with (data.dvc md5, prepared md5, dvc status), as JSON."""
    from pipelines.data import data_lineage

    typer.echo(json.dumps(data_lineage(hash_workspace=hash_workspace), indent=2))


def register(root: typer.Typer) -> None:
    """Add this group to the main app."""
    root.add_typer(app, name="data")
