"""`ganpkg serve` against a real `prefect server start` on loopback: deployment + triggered run."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.serve import free_port

BIN = Path(sys.executable).parent


def api(url: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or "null")


def wait_for(check, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serve_creates_the_scheduled_deployment_and_runs_it(project, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_PROFILES_PATH", None)
    server = subprocess.Popen([BIN / "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    serve = None
    try:
        def healthy():
            try:
                return api(url, "/health")
            except OSError:
                assert server.poll() is None, "prefect server exited"
                return False

        wait_for(healthy, 120, "prefect server")
        log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  outlives this block: the server writes it
        serve = subprocess.Popen([BIN / "ganpkg", "serve"], cwd=project, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)

        def deployment():
            try:
                return api(url, "/deployments/name/retrain/scheduled")
            except OSError:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                return None

        dep = wait_for(deployment, 120, "the deployment retrain/scheduled")
        crons = [s["schedule"]["cron"] for s in dep["schedules"]]
        assert crons == ["0 3 * * 1"]  # params.yaml schedule.cron
        # The same deployment as prefect.yaml's: UTC, one run at a time, no test hook.
        assert [s["schedule"]["timezone"] for s in dep["schedules"]] == ["UTC"]
        limit = dep.get("global_concurrency_limit") or {}
        assert limit.get("limit") == 1 or dep.get("concurrency_limit") == 1, dep
        # New data starts a retrain: an automation on ganpkg.data.updated runs this deployment.
        automations = api(url, f"/automations/related-to/prefect.deployment.{dep['id']}")
        triggers = [a["trigger"] for a in automations]
        assert [t["expect"] for t in triggers] == [["ganpkg.data.updated"]], automations
        assert triggers[0]["match"] == {"prefect.resource.id": "ganpkg.data.*"}
        form = dep["parameter_openapi_schema"]["properties"]
        assert set(form) == {"config_path", "overrides", "force"}
        assert all(field.get("description") for field in form.values()), form

        run = subprocess.run([BIN / "prefect", "deployment", "run", "retrain/scheduled",
                              "--param", "force=true"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        flow_run_id = api(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [dep["id"]]}}}
                          )[0]["id"]

        def finished():
            state = api(url, f"/flow_runs/{flow_run_id}")["state"]
            return state["type"] if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        final = wait_for(finished, 300, "the triggered flow run")
        assert final == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        if serve is not None:
            stop(serve)
        stop(server)
