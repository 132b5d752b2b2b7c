"""Starting/stopping `mlflow server` and driving headless Chromium for the UI test."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pipelines.serve import free_port, wait_answering

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)


def start_server(uri: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on 127.0.0.1:<free port> in its own process group; returns (proc, url)."""
    port = free_port()
    with open(log_path, "w") as log:  # the child keeps its own handle
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
    return server, f"http://127.0.0.1:{port}"


def wait_healthy(server: subprocess.Popen, base: str, timeout_s: float = 120) -> bool:
    """True once /health answers; False if the server died or the time ran out."""
    return wait_answering(server, base, timeout_s, interval_s=0.5)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it and its uvicorn worker), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=3)  # it only read the store: no need to wait for a graceful exit
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def chromium(*args: str) -> str:
    """Run headless Chromium once; returns its stdout (e.g. --dump-dom)."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--window-size=1400,1400", *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout
