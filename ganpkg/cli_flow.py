"""`ganpkg run` (the retrain flow), `ganpkg sweep` (parallel trials) and `ganpkg serve`.

They call into pipelines/ (Prefect, MLflow, DVC), imported lazily so that `ganpkg train` and
friends work on a box that has only PyTorch.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ganpkg.cli_common import ConfigOpt, SetOpt, console, resolve_config

# Prefect's temporary local server needs more than its default 20 s to start on a busy 2-core
# machine; and offline, its telemetry only logs errors. Users' own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def _prefect_defaults() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _config_path(config: Path) -> str | None:
    """What the flows get: the params file, or None for the embedded defaults."""
    return str(config) if config.exists() else None


def _in_prefect(start: Callable[[], Any]) -> Any:
    """``start()`` (it imports and calls a flow) against Prefect's temporary server, started
    first so that its start-up overlaps the heavy imports; a configured API URL wins."""
    _prefect_defaults()
    from pipelines.early_server import EarlyServer, warm_imports

    with EarlyServer() as server:
        warm_imports()  # while the server starts, on the other core
        with server.settings():
            return start()


def register(app: typer.Typer) -> None:
    """Add the orchestration commands to the main app."""

    @app.command()
    def run(
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
        force: Annotated[bool, typer.Option(help="Retrain even if data and config are those of "
                                            "the current champion.")] = False,
    ) -> None:
        """The whole pipeline as one Prefect flow: data → prepare → train → evaluate → register."""
        resolve_config(config, set_)  # validate before starting Prefect (one-line errors)

        def start() -> dict:
            from pipelines.flows import retrain

            return retrain(config_path=_config_path(config), overrides=list(set_ or []),
                           force=force)

        outcome = _in_prefect(start)
        from pipelines.main import print_outcome

        print_outcome(outcome, console)

    @app.command()
    def sweep(
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
        grid: Annotated[list[str] | None, typer.Option(
            help="section.key=v1,v2,...: one trial per combination of all --grid values "
                 "(repeatable).")] = None,
        trial: Annotated[list[str] | None, typer.Option(
            help="One more trial, its overrides space-separated: "
                 "\"train.lr_g=1e-4 model.g_width=16\" (repeatable).")] = None,
        max_parallel: Annotated[int, typer.Option(min=1, help="Trials running at once.")] = 2,
    ) -> None:
        """Hyperparameter sweep: each trial trains and evaluates as a flow run of its own.

        Data is prepared once; trials are MLflow runs nested under one parent run; the best by
        registry.primary_metric is registered and gated like `ganpkg run`. A failed trial is
        reported, the sweep fails only if all do. Trials vary model.* and train.* keys.
        Example (4 trials): ganpkg sweep --grid train.lr_g=1e-4,2e-4 --grid model.g_width=16,32.
        On a work pool: `prefect deploy` pipelines/sweep.py:sweep (its trials run in its worker).
        """
        from ganpkg.sweep import check_trials, sweep_trials

        trials = sweep_trials(grid or [], trial or [])
        check_trials(trials, set_ or [])
        for spec in trials:  # every trial validated before Prefect starts (one-line errors)
            resolve_config(config, [*(set_ or []), *spec])

        def start() -> dict:
            from pipelines.sweep import sweep as sweep_flow

            return sweep_flow(config_path=_config_path(config), trials=trials,
                              overrides=list(set_ or []), max_parallel=max_parallel)

        outcome = _in_prefect(start)
        from pipelines.sweep import print_sweep

        print_sweep(outcome, console)

    @app.command()
    def serve(
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
        name: Annotated[str, typer.Option(help="Deployment name.")] = "scheduled",
    ) -> None:
        """Serve the retrain flow with the cron schedule of params.yaml (Ctrl-C stops).

        Starts a local Prefect server on 127.0.0.1:4200 when PREFECT_API_URL answers nothing.
        Trigger an ad-hoc run with: prefect deployment run 'retrain/scheduled'.
        """
        cfg = resolve_config(config, set_)
        _prefect_defaults()
        from pipelines.serve import serve_retrain

        serve_retrain(cfg, config_path=_config_path(config),
                      overrides=list(set_ or []), name=name)
