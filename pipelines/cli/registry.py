"""`ganpkg promote`, `ganpkg lineage`, `ganpkg leaderboard`: the model registry's commands.

MLflow is imported inside each command. The tracking store is $MLFLOW_TRACKING_URI, else
./mlflow.db.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganpkg.errors import UserError
from pipelines.cli.common import ConfigOpt, SetOpt, resolve_config, say
from pipelines.preflight import check_store_exists

VersionOpt = Annotated[int | None, typer.Option("--version", min=1,
                                                help="Model version to make champion.")]
ReasonOpt = Annotated[str, typer.Option(help="Why (recorded as a version tag).")]
RollbackOpt = Annotated[bool, typer.Option(
    "--rollback", help="Make previous-champion the champion again.")]


def promote(version: VersionOpt = None, reason: ReasonOpt = "", rollback: RollbackOpt = False,
            config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Move the `champion` alias by hand: --version N --reason TEXT, or --rollback."""
    from pipelines import registry

    cfg = resolve_config(config, set_)
    name = cfg.registry.model_name
    if rollback == (version is not None):
        raise UserError("give exactly one of --version N (with --reason) or --rollback")
    check_store_exists()
    if rollback:
        restored = registry.rollback(name, reason or "rollback")
        say(f"{name}: champion is v{restored} again (rolled back)")
    else:
        old = registry.promote(name, version, reason)
        say(f"{name}: champion is v{version} (previous-champion: v{old})"
            if old != "none" else f"{name}: champion is v{version}")


UriArg = Annotated[str, typer.Argument(
    help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID or a run id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ConfigOutOpt = Annotated[Path | None, typer.Option(
    help="Also write the resolved config the run trained with (for `ganpkg train --config`).")]


def lineage(uri: UriArg, json_: JsonOpt = False, config_out: ConfigOutOpt = None) -> None:
    """Data version, commit, params, metrics, flow run, and the commands that reproduce it."""
    from pipelines.lineage import download_config, format_lineage, lineage_json
    from pipelines.lineage import lineage as get_lineage

    check_store_exists()
    info = get_lineage(uri)
    typer.echo(lineage_json(info) if json_ else format_lineage(info))
    if config_out is not None:
        say(f"config written: {download_config(uri, config_out)}")


SortOpt = Annotated[str | None, typer.Option(
    "--sort", help="Metric (or column) to sort by, best first; default: the first fid_* metric.")]
OrderOpt = Annotated[bool | None, typer.Option(
    "--ascending/--descending", help="Override the metric's own direction.", show_default=False)]
CsvOpt = Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")]
LimitOpt = Annotated[int, typer.Option(min=1, help="At most this many runs.")]


def leaderboard(sort: SortOpt = None, ascending: OrderOpt = None, csv: CsvOpt = None,
                limit: LimitOpt = 1000, config: ConfigOpt = Path("params.yaml"),
                set_: SetOpt = None) -> None:
    """Runs and model versions side by side (metrics with protocol, data version, aliases)."""
    from pipelines.leaderboard import format_table, write_csv
    from pipelines.leaderboard import leaderboard as get_table

    cfg = resolve_config(config, set_)
    check_store_exists()
    table = get_table(model_name=cfg.registry.model_name, sort_by=sort, ascending=ascending,
                      max_results=limit)
    typer.echo(format_table(table))
    if csv is not None:
        say(f"csv written: {write_csv(table, csv)}")


def register(root: typer.Typer) -> None:
    """Add these commands to the main app."""
    for command in (promote, lineage, leaderboard):
        root.command()(command)
