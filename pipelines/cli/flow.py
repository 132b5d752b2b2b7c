"""`ganpkg run` (the retrain flow), `ganpkg sweep` (parallel trials) and `ganpkg serve`.

Prefect, MLflow and DVC are imported inside the commands, so the other commands of the app
work on a box that has only PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ganpkg.config import Config
from ganpkg.errors import UserError
from ganpkg.sweep import check_trials, sweep_trials
from pipelines.cli.common import ConfigOpt, SetOpt, config_path, console, resolve_config


def preflight(configs: list[Config], overrides: list[str]) -> None:
    """What would fail late, checked before Prefect starts (each failure one line): --set of
    keys DVC reads, the configured servers (5 s each), the run folders being writable."""
    from pipelines.data import refuse_dvc_overrides
    from pipelines.preflight import check_prefect_server, check_tracking_server, check_writable

    refuse_dvc_overrides(overrides)
    check_tracking_server(write=True)
    check_prefect_server()
    explicit = any(o.split("=", 1)[0].strip() == "train.run_dir" for o in overrides)
    for cfg in configs:  # the flow trains in run_dir when it is set explicitly, else beside it
        folder = Path(cfg.train.run_dir)
        check_writable(folder if explicit else folder.parent, "train.run_dir")


def _in_prefect(start: Callable[[], Any], configs: list[Config]) -> Any:
    """``start()`` (it imports and calls a flow) once Prefect's temporary server answers; the
    server starts first so that its start-up overlaps the heavy imports."""
    from pipelines.prefect_server import TemporaryServer, warm_imports

    with TemporaryServer() as server:
        warm_imports()  # while the server starts, on the other core
        from pipelines.flows import check_ready

        for cfg in configs:  # evaluation weights, gate metric: here, not inside the flow
            check_ready(cfg)
        server.wait()
        try:
            return start()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM; Typer then exits 130
            from pipelines.flows import interrupted_message

            console.print(interrupted_message(), highlight=False, markup=False, soft_wrap=True)
            raise


ForceOpt = Annotated[bool, typer.Option(
    help="Retrain even if data and config are those of the current champion.")]


def run(config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None,
        force: ForceOpt = False) -> None:
    """The whole pipeline as one Prefect flow: data → prepare → train → evaluate → register."""
    cfg = resolve_config(config, set_)  # validate before starting Prefect (one-line errors)
    preflight([cfg], list(set_ or []))

    def start() -> dict:
        from pipelines.flows import retrain

        return retrain(config_path=config_path(config), overrides=list(set_ or []), force=force)

    outcome = _in_prefect(start, [cfg])
    from pipelines.main import print_outcome

    print_outcome(outcome, console)


GridOpt = Annotated[list[str] | None, typer.Option(
    help="section.key=v1,v2,...: one trial per combination of all --grid values (repeatable).")]
TrialOpt = Annotated[list[str] | None, typer.Option(
    help="One more trial, its overrides space-separated: "
         "\"train.lr_g=1e-4 model.g_width=16\" (repeatable).")]
ParallelOpt = Annotated[int, typer.Option(min=1, help="Trials running at once.")]


def sweep(config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None, grid: GridOpt = None,
          trial: TrialOpt = None, max_parallel: ParallelOpt = 2) -> None:
    """Hyperparameter sweep: each trial trains and evaluates as a flow run of its own.

    Data is prepared once; trials are MLflow runs nested under one parent run; the best by
    registry.primary_metric is registered and gated like `ganpkg run`. A failed trial is
    reported, the sweep fails only if all do. Trials vary model.* and train.* keys.
    Example (4 trials): ganpkg sweep --grid train.lr_g=1e-4,2e-4 --grid model.g_width=16,32.
    On a work pool: `prefect deploy` pipelines/sweep.py:sweep (its trials run in its worker).
    """
    trials = sweep_trials(grid or [], trial or [])
    check_trials(trials, set_ or [])
    # every trial validated before Prefect starts (one-line errors)
    configs = [resolve_config(config, [*(set_ or []), *spec]) for spec in trials]
    preflight(configs, list(set_ or []))

    def start() -> dict:
        from pipelines.sweep import sweep as sweep_flow

        return sweep_flow(config_path=config_path(config), trials=trials,
                          overrides=list(set_ or []), max_parallel=max_parallel)

    outcome = _in_prefect(start, configs)
    from pipelines.sweep import print_sweep

    print_sweep(outcome, console)


NameOpt = Annotated[str, typer.Option(help="Deployment name.")]


def serve(config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None,
          name: NameOpt = "scheduled") -> None:
    """Serve the retrain flow with the cron schedule of params.yaml (Ctrl-C stops).

    Starts a local Prefect server on 127.0.0.1:4200 when PREFECT_API_URL answers nothing.
    Trigger an ad-hoc run with: prefect deployment run 'retrain/scheduled'.
    """
    from pipelines.prefect_server import apply_prefect_defaults
    from pipelines.serve import serve_retrain

    cfg = resolve_config(config, set_)
    check_cron(cfg.schedule.cron)
    preflight([cfg], list(set_ or []))
    apply_prefect_defaults()
    serve_retrain(cfg, config_path=config_path(config), overrides=list(set_ or []), name=name)


def check_cron(cron: str) -> None:
    """schedule.cron must be a cron expression Prefect schedules (its own validator decides)."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError as err:
        reason = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise UserError(f"schedule.cron: {reason} (five fields: minute hour day month weekday, "
                        f"e.g. \"0 3 * * 1\")") from None


def register(root: typer.Typer) -> None:
    """Add these commands to the main app."""
    for command in (run, sweep, serve):
        root.command()(command)
