"""Prefect's temporary local server for `ganpkg run`, started before anything heavy is imported.

Left to itself, Prefect starts its temporary server at the flow's first API call: the parent
first imports Prefect's whole server package (about 4 s here) only to spawn it, then waits
8–15 s for it while doing nothing. Starting the same uvicorn process (same app factory, same
settings flags as prefect.server.api.server.SubprocessASGIServer) at the command's start lets
that start-up overlap with importing Prefect, torch and MLflow and validating the config, on
the other core. Starting it imports nothing from Prefect, so it can come first.

A Prefect API the user configured (PREFECT_API_URL in the environment or in the active Prefect
profile) always wins: the early server is then stopped unused.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from pipelines.serve import free_port, wait_answering


class EarlyServer:
    """``with EarlyServer() as server, server.settings(): flow()`` — stopped when it ends."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def __enter__(self) -> Self:
        if os.environ.get("PREFECT_API_URL"):
            return self  # the user's server
        spec = importlib.util.find_spec("prefect")
        assert spec and spec.origin, "prefect is not installed"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        # The flags Prefect's own temporary server sets: no UI, ephemeral mode.
        env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1",
                   PREFECT__SERVER_FINAL="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parents[1]),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env=env, start_new_session=True)
        return self

    @contextmanager
    def settings(self) -> Iterator[None]:
        """Prefect pointed at the early server once it answers, for the block's duration.

        A Prefect profile that sets its own API URL wins: the early server is stopped unused.
        """
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        if self.proc is None or get_current_settings().api.url:
            self.stop()
            yield
            return
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        if not wait_answering(self.proc, self.url, timeout):
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(f"Prefect's temporary server at {self.url} did not start "
                               f"within {timeout:.0f} s (exit code {code}); set "
                               f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher")
        print(f"Prefect: temporary server on {self.url[:-4]}", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            try:
                yield
            finally:
                # Logs and events still queued must reach the server before it stops
                # (Prefect's own temporary server outlives them: it stops at exit).
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10)
                EventsWorker.drain_all(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __exit__(self, *exc) -> None:
        self.stop()


def warm_imports() -> None:
    """Import what the flow's tasks will need (torch, torch-fidelity, MLflow) ahead of time.

    Called between starting the early server and waiting for it, so these seconds of imports
    overlap with the server's start-up instead of adding to it.
    """
    # torch and torch-fidelity, the training loop, prefect, mlflow
    for module in ("ganpkg.evaluation.fidelity", "ganpkg.training", "pipelines.flows",
                   "pipelines.tracking"):
        importlib.import_module(module)
