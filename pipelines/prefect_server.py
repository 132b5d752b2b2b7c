"""Prefect's own temporary server for `ganpkg run` and `ganpkg sweep`, started early.

Left to itself, Prefect starts its temporary server (``SubprocessASGIServer``) at the flow's
first API call and then waits 8–15 s for it doing nothing. ``TemporaryServer`` asks the very
same object to start at the command's beginning, in a thread, so the server's start-up overlaps
with importing torch, torch-fidelity and MLflow on the other core. Everything else is Prefect's:
the server class is a singleton the flow's client then finds running, it forwards the current
settings to the child, retries on a port clash, and stops at exit after the log and event
workers have drained (Prefect's own exit hooks). A configured PREFECT_API_URL (environment or
profile) wins: nothing is started.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Self

# Prefect's temporary server needs more than its default 20 s to start on a busy 2-core
# machine; and offline, its telemetry only logs errors. Users' own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_prefect_defaults() -> None:
    """PREFECT_DEFAULTS into the environment where the user set nothing."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


class TemporaryServer:
    """``with TemporaryServer() as server: …; server.wait(); flow()``."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="prefect-temporary-server",
                                        daemon=True)

    def _start(self) -> None:
        try:
            from prefect.settings import get_current_settings

            if get_current_settings().api.url:
                return  # the user's server
            from prefect.server.api.server import SubprocessASGIServer

            # Its UI is off and it stops at exit: Prefect's "View at http://127.0.0.1:…" line
            # would be a dead link (an empty UI URL makes Prefect print none). The command
            # prints the MLflow run's address instead.
            os.environ.setdefault("PREFECT_UI_URL", "")

            server = SubprocessASGIServer()  # the instance Prefect's clients will use
            server.start()
            self.url = server.api_url
        except BaseException as err:  # noqa: BLE001  re-raised in wait(), on the main thread
            self._error = err

    def __enter__(self) -> Self:
        apply_prefect_defaults()
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the server answers (or re-raise why it could not start)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self.url:
            print(f"Prefect: temporary server on {self.url[:-4]}", flush=True)

    def __exit__(self, *exc) -> None:
        self._thread.join()


def warm_imports() -> None:
    """Import what the flow's tasks will need (torch, torch-fidelity, MLflow) ahead of time,
    while the server starts."""
    for module in ("ganpkg.evaluation.fidelity", "ganpkg.training", "pipelines.flows",
                   "pipelines.tracking"):
        importlib.import_module(module)
