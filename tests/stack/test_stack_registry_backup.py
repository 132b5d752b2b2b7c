"""`local_stack.py backup` of the real stack (conftest.py's) and `restore` into a fresh one: the
champion, its tags and lineage survive and load. Runs last (name order): it backs up the
registry the other stack tests filled. Skips only where PostgreSQL is not installed.
"""

import subprocess
import sys
import time

import requests
import yaml
from stack_helpers import NEEDS_POSTGRES, Stack, client_env, mlflow_rest, stack_cli

pytestmark = NEEDS_POSTGRES


def champion_record(env_vars: dict[str, str], model: str) -> tuple[dict, dict]:
    """(the @champion version, its run), as the authenticated MLflow server returns them."""
    mlflow_api, auth = mlflow_rest(env_vars)
    version = requests.get(f"{mlflow_api}/registered-models/alias", auth=auth, timeout=30,
                           params={"name": model, "alias": "champion"}).json()["model_version"]
    run = requests.get(f"{mlflow_api}/runs/get", params={"run_id": version["run_id"]},
                       auth=auth, timeout=30).json()["run"]
    return version, run


def test_the_registry_survives_backup_and_restore_into_a_fresh_stack(stack, project, tmp_path,
                                                                     record_property):
    env_vars = stack.ready()
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]
    version, run = champion_record(env_vars, model)
    saved = tmp_path / "backup"
    done = stack_cli("backup", "--dir", str(stack.dir), "--path", str(saved), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\n{done.stdout}", end="")
    assert "password" not in (saved / "backup.json").read_text()

    fresh = Stack(tmp_path / "fresh")
    try:
        fresh_env = fresh.ready()
        assert fresh_env["MLFLOW_TRACKING_URI"] != env_vars["MLFLOW_TRACKING_URI"]
        started = time.monotonic()
        done = stack_cli("restore", "--dir", str(fresh.dir), "--path", str(saved), timeout=300)
        record_property("restore_seconds", round(time.monotonic() - started, 1))
        assert done.returncode == 0, done.stdout + done.stderr
        print(done.stdout, end="")
        restored, restored_run = champion_record(fresh_env, model)
        assert restored["version"] == version["version"] and restored["aliases"] == ["champion"]
        assert restored["tags"] == version["tags"]  # gate decision, metrics, protocol
        lineage = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert {t["key"]: t["value"] for t in restored_run["data"]["tags"]} == lineage
        assert lineage["prefect.flow_run_id"] and lineage["data.dvc_md5"]
        # The champion loads from the restored stack (artifacts back in its S3 bucket).
        code = ("import torch; from pipelines.registry_load import load_registered_generator; "
                f"g, z = load_registered_generator('models:/{model}@champion'); "
                "print(tuple(g(torch.randn(3, z)).shape))")
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=client_env(fresh_env, tmp_path / "prefect-client"),
                                cwd=tmp_path, timeout=300, check=False)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert loaded.stdout.strip() == "(3, 1, 32, 32)", loaded.stdout
    finally:
        if fresh.proc.poll() is None:
            fresh.proc.communicate(timeout=300)
        down = stack_cli("down", "--dir", str(fresh.dir), "--purge", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
