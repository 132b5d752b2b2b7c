"""Scheduled retraining: serve the retrain flow as a deployment with params.yaml's cron."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ganpkg.config import Config

LOCAL_API = "http://127.0.0.1:4200/api"


def api_answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when a Prefect API answers its health check at ``url``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_answering(proc: subprocess.Popen, url: str, timeout_s: float,
                   interval_s: float = 0.1) -> bool:
    """Poll ``url``'s health check: True once it answers, False if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not api_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_local_server(url: str = LOCAL_API, wait_s: float = 90.0) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:4200 in the background; returns once it answers."""
    prefect = str(Path(sys.executable).with_name("prefect"))
    port = url.split(":")[-1].split("/")[0]
    proc = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if not wait_answering(proc, url, wait_s, interval_s=1.0):
        proc.kill()
        raise RuntimeError(f"prefect server did not answer at {url} within {wait_s:.0f}s")
    return proc


def data_trigger(parameters: dict):
    """Retrain when a new data version is announced (pipelines.data_events): prefect.yaml's
    trigger, for the served deployment."""
    from prefect.events import DeploymentEventTrigger

    from pipelines.data_events import EVENT

    return DeploymentEventTrigger(expect={EVENT}, match={"prefect.resource.id": "ganpkg.data.*"},
                                  parameters=parameters)


def serve_retrain(config: Config, config_path: str | None, overrides: list[str],
                  name: str = "scheduled") -> None:
    """Serve `retrain` with ``config.schedule.cron`` and the data trigger; start a local server
    if none answers."""
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or LOCAL_API
    server = None
    if not api_answers(url):
        if os.environ.get("PREFECT_API_URL"):
            raise RuntimeError(f"PREFECT_API_URL={url} does not answer")
        print(f"starting a local Prefect server at {url} (UI: {url[:-4]})", flush=True)
        server = start_local_server(url)
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            from pipelines.flows import retrain

            print(f"serving retrain/{name} on cron {config.schedule.cron!r} "
                  f"(policy {config.schedule.policy}); trigger now with: "
                  f"prefect deployment run 'retrain/{name}'", flush=True)
            # What prefect.yaml's deployments say too: the cron in UTC, one run at a time.
            parameters = {"config_path": config_path, "overrides": overrides}
            retrain.serve(name=name, schedules=[Cron(config.schedule.cron, timezone="UTC")],
                          global_limit=1, parameters=parameters,
                          triggers=[data_trigger({**parameters, "force": False})],
                          description="ganpkg retrain: data → prepare → train → evaluate → "
                                      "register and gate")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
