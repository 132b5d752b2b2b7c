"""infra/: the training image, the work-pool templates, prefect.yaml and the runbook's pools,
checked without Docker."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra_helpers import (
    INFRA,
    PLACEHOLDER,
    POOL_FILES,
    ROOT,
    RUNBOOK,
    SECRET_NAME,
    args_of,
    build_file,
    environment,
    load_compose,
    pool,
    prefect_yaml,
    resolved,
    runbook_pools,
    services,
)

from pipelines.serve import data_trigger


def test_worker_reserves_an_nvidia_gpu_and_runs_the_training_image():
    worker = services()["prefect-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert build_file(worker) == INFRA / "Dockerfile"
    env = environment(worker)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "PREFECT_API_AUTH_STRING", "DVC_REMOTE_URL"):
        assert key in env, key


def test_workers_start_pools_that_exist():
    pool_names = {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}
    for name, service in services().items():
        command = service.get("command") or []
        if command[:3] == ["prefect", "worker", "start"]:
            args = args_of(command)
            assert args["--pool"] in pool_names, name
            template = args["--base-job-template"]
            assert (ROOT / template).is_file(), template
            assert Path(template).stem == args["--type"], name
            assert "--with-healthcheck" in args, name


def test_training_image():
    text = (INFRA / "Dockerfile").read_text()
    base = re.search(r"ARG BASE_IMAGE=(\S+)", text).group(1)
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", base)
    assert "FROM ${BASE_IMAGE}" in text
    for needed in ('"dvc[s3]==3.67.1"', "psycopg2-binary", "pip install"):
        assert needed in text, needed
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1] not in ("root", "0"), "the image must not run as root"
    assert re.search(r"^WORKDIR /opt/ganpkg$", text, re.MULTILINE)
    assert 'CMD ["ganpkg", "--help"]' in text
    entrypoint = INFRA / "docker-entrypoint.sh"
    assert f'ENTRYPOINT ["/opt/ganpkg/infra/{entrypoint.name}"]' in text
    assert "--local" in entrypoint.read_text()  # never rewrites the committed .dvc/config


def test_dockerignore_keeps_stores_and_secrets_out():
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".venv", "runs", "prepared", "mlflow.db", "mlruns", ".cache", "data",
                  "extractor", "infra/.env"):
        assert entry in lines, entry
    assert ".git" not in lines, ".git is needed in the image (DVC, lineage)"
    assert ".env" in (INFRA / ".gitignore").read_text().split()


# -- work pools ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(POOL_FILES))
def test_work_pool_template_shape_and_placeholders(name):
    template = pool(name)
    assert set(template) >= {"job_configuration", "variables"}
    properties = template["variables"]["properties"]
    assert template["variables"]["type"] == "object" and properties
    used = {m for value in template["job_configuration"].values()
            for m in PLACEHOLDER.findall(json.dumps(value))}
    assert used, "a template without placeholders passes nothing through"
    assert used <= set(properties), f"undeclared: {sorted(used - set(properties))}"


def test_docker_pool_matches_the_stack():
    template = pool("docker")
    props = template["variables"]["properties"]
    compose = load_compose()
    assert props["image"]["default"] == compose["services"]["prefect-worker"]["image"]
    assert props["networks"]["default"] == [compose["networks"]["default"]["name"]]
    volume_names = {v["name"] for v in compose["volumes"].values()}
    for volume in props["volumes"]["default"]:
        assert volume.split(":")[0] in volume_names, volume
    kwargs = resolved(template, template["job_configuration"]["container_create_kwargs"])
    assert any(r["Driver"] == "nvidia" and ["gpu"] in r["Capabilities"]
               for r in kwargs["device_requests"])
    env = props["env"]["default"]
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                "PREFECT_API_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_ENDPOINT_URL", "DVC_REMOTE_URL"):
        assert key in env, key
    # secrets are read from the docker worker's environment when a run starts
    worker_env = environment(compose["services"]["prefect-docker-worker"])
    for key, value in env.items():
        if SECRET_NAME.search(key) or key.endswith("_USERNAME"):
            assert re.fullmatch(r"{{ \$\w+ }}", value), f"{key}: literal in the template"
        for var in re.findall(r"{{\s*\$(\w+)\s*}}", value):
            assert var in worker_env, f"docker worker does not have {var}"


def test_kubernetes_pool_asks_for_gpu_nodes():
    template = pool("kubernetes")
    manifest = template["job_configuration"]["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    gpus = template["variables"]["properties"]["gpus"]
    assert gpus["type"] == "integer" and gpus["default"] >= 1
    assert resolved(template, pod["nodeSelector"]) == {"nvidia.com/gpu.present": "true"}
    assert container["args"] == "{{ command }}"  # keeps the image's entrypoint (DVC remote)
    assert container["envFrom"][0]["secretRef"]["name"] == "{{ secret_name }}"
    assert not any(SECRET_NAME.search(k) for k in
                   template["variables"]["properties"]["env"]["default"])


# -- prefect.yaml ----------------------------------------------------------------------------
def test_deployments_point_at_the_retrain_flow_on_the_params_cron():
    cron = yaml.safe_load((ROOT / "params.yaml").read_text())["schedule"]["cron"]
    deployments = prefect_yaml()["deployments"]
    assert {"scheduled", "docker", "kubernetes"} <= {d["name"] for d in deployments}
    for deployment in deployments:
        path, _, function = deployment["entrypoint"].partition(":")
        tree = ast.parse((ROOT / path).read_text())
        assert any(isinstance(node, ast.FunctionDef) and node.name == function
                   for node in tree.body), deployment["entrypoint"]
        assert function == "retrain"
        assert [s["cron"] for s in deployment["schedules"]] == [cron], deployment["name"]
        # The data trigger `ganpkg serve` sets too (pipelines/serve.py data_trigger).
        (trigger,) = deployment["triggers"]
        served = data_trigger(trigger["parameters"])
        assert set(trigger["expect"]) == served.expect, deployment["name"]
        assert trigger["match"] == served.match.root and trigger["type"] == served.type
        assert trigger["parameters"]["force"] is False


def test_deployment_pools_are_created_by_the_runbook():
    created = runbook_pools()
    for deployment in prefect_yaml()["deployments"]:
        name = deployment["work_pool"]["name"]
        assert name in created, f"runbook does not create pool {name}"
        kind, template = created[name]
        assert template == f"infra/work-pools/{kind}.json"
        assert (ROOT / template).is_file()


def test_runbook_local_stack_commands():
    text = RUNBOOK.read_text()
    for command in (".venv/bin/python infra/local_stack.py up --dir .stack",
                    ". .stack/env && make run",
                    ".venv/bin/python infra/local_stack.py down --dir .stack"):
        assert command in text, command
    # Every local_stack.py command the runbook names is one the script has.
    help_ = subprocess.run([sys.executable, str(ROOT / "infra/local_stack.py"), "--help"],
                           capture_output=True, text=True, check=True).stdout
    known = set(re.search(r"<([a-z|-]+)>", help_).group(1).split("|"))
    named = set(re.findall(r"infra/local_stack\.py ([a-z-]+)", text))
    assert {"up", "down", "dvc-remote", "backup", "restore"} <= named <= known, (named, known)
