"""`ganpkg run` (the retrain flow) and `ganpkg serve` (scheduled retraining).

Both call into pipelines/ (Prefect, MLflow, DVC), imported lazily so that `ganpkg train` and
friends work on a box that has only PyTorch.
"""

import os
from pathlib import Path
from typing import Annotated

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
        _prefect_defaults()
        from pipelines.flows import retrain
        from pipelines.main import print_outcome

        path = str(config) if config.exists() else None
        outcome = retrain(config_path=path, overrides=list(set_ or []), force=force)
        print_outcome(outcome, console)

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

        serve_retrain(cfg, config_path=str(config) if config.exists() else None,
                      overrides=list(set_ or []), name=name)
