"""infra/: the compose stack, images, work-pool templates and prefect.yaml, checked without Docker.

Nothing here starts a container: these guard the contracts between the files (every variable
in .env.example, no committed secret, health-gated start order, GPU reservation, Prefect's
template rule that every ``{{ var }}`` is declared) so that a broken stack fails in CI rather
than on the GPU host. ``docker compose config`` runs too where the compose plugin exists.
"""

import ast
import configparser
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_FILE = INFRA / "compose.yaml"
ENV_EXAMPLE = INFRA / ".env.example"
RUNBOOK = INFRA / "README.md"
POOL_FILES = {name: INFRA / "work-pools" / f"{name}.json"
              for name in ("process", "docker", "kubernetes")}

REQUIRED_SERVICES = {"postgres", "minio", "minio-init", "mlflow", "prefect-server",
                     "prefect-worker"}
ONE_SHOT = {"minio-init"}
# container ports each service publishes; everything else (postgres, workers) publishes none
PUBLISHED = {"mlflow": {5000}, "prefect-server": {4200}, "minio": {9000, 9001}}
# script mounted or baked into a service -> that service
SCRIPTS = {"postgres": INFRA / "postgres" / "init-databases.sh",
           "minio-init": INFRA / "minio" / "init-buckets.sh",
           "mlflow": INFRA / "mlflow" / "start-server.sh"}

# compose interpolation: ${VAR}, ${VAR:-default}, ${VAR:?message}; $${VAR} is a literal "$".
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")
# the Prefect server's own rule (prefect.server.schemas.actions.validate_base_job_template)
PLACEHOLDER = re.compile(r"{{\s*([\w\.\-\[\]$]+)\s*}}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH_STRING|_KEY$")
PLACEHOLDER_VALUE = "change-me"


# -- helpers ---------------------------------------------------------------------------------
def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict:
    return load_compose()["services"]


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(text: str) -> str:
    """Compose's substitution with the .env.example values."""
    values = env_example()
    return VAR_REF.sub(lambda m: values[m.group(1)], text)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def args_of(command: list[str]) -> dict[str, str | None]:
    """--flag=value / --flag value / --flag → {flag: value or None}."""
    out, i = {}, 0
    while i < len(command):
        token = command[i]
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if not eq and i + 1 < len(command) and not command[i + 1].startswith("--"):
                value, i = command[i + 1], i + 1
            out[name] = value if (eq or value) else None
        i += 1
    return out


def build_file(service: dict) -> Path:
    """The Dockerfile of a service: compose resolves the context against the file's folder."""
    context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
    return context / service["build"]["dockerfile"]


def pool(name: str) -> dict:
    return json.loads(POOL_FILES[name].read_text())


def resolved(template: dict, job_value):
    """A job_configuration value with a whole-string ``{{ var }}`` replaced by var's default."""
    match = PLACEHOLDER.fullmatch(job_value) if isinstance(job_value, str) else None
    if not match:
        return job_value
    return template["variables"]["properties"][match.group(1)].get("default")


def prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def runbook_pools() -> dict[str, tuple[str, str]]:
    """`prefect work-pool create NAME --type T --base-job-template FILE` in the runbook."""
    text = RUNBOOK.read_text().replace("\\\n", " ")
    found = re.findall(r"prefect work-pool create (\S+) --type (\S+)\s+--base-job-template (\S+)",
                       text)
    return {name: (kind, path) for name, kind, path in found}


# -- compose ---------------------------------------------------------------------------------
def test_compose_has_the_services():
    assert REQUIRED_SERVICES <= set(services())


def test_every_long_running_service_has_a_healthcheck():
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_start_order_waits_for_health():
    all_services = services()
    for name, service in all_services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition") if isinstance(spec, dict) else None
            if dep in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dep)
            else:
                assert condition == "service_healthy", (name, dep)
                assert all_services[dep].get("healthcheck"), (name, dep)
    assert "mlflow" in all_services["prefect-worker"]["depends_on"]
    assert "prefect-server" in all_services["prefect-worker"]["depends_on"]
    assert "postgres" in all_services["mlflow"]["depends_on"]
    assert "postgres" in all_services["prefect-server"]["depends_on"]


def test_named_volumes_are_declared_and_used():
    compose = load_compose()
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = (volume.split(":")[0] if isinstance(volume, str) else volume["source"])
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared but unused: {declared - used}"
    for needed in ("postgres-data", "minio-data"):
        assert needed in declared


def test_published_ports():
    published = {}
    for name, service in services().items():
        for port in service.get("ports", []):
            parts = interpolate(str(port)).split(":")
            host_port, container_port = int(parts[-2]), int(parts[-1])
            assert host_port == container_port, port
            assert parts[0] in ("127.0.0.1", "0.0.0.0"), f"{name}: bind address {port}"
            published.setdefault(name, set()).add(container_port)
    assert published == PUBLISHED


def strings_in(node):
    """Every string value of parsed YAML (what compose interpolates; comments are not)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, str):
        yield node


def test_every_variable_is_in_env_example():
    referenced = {m.group(1) for text in strings_in(load_compose())
                  for m in VAR_REF.finditer(text)}
    missing = referenced - set(env_example())
    assert not missing, f"add to infra/.env.example: {sorted(missing)}"
    unused = set(env_example()) - referenced
    assert not unused, f"in .env.example but not used by compose.yaml: {sorted(unused)}"


def test_scripts_get_the_variables_they_require():
    all_services = services()
    for name, script in SCRIPTS.items():
        required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", script.read_text()))
        assert required, f"{script.name} checks no variable"
        given = set(environment(all_services[name]))
        assert required <= given, f"{name} lacks {sorted(required - given)} for {script.name}"
        assert os.access(script, os.X_OK) or script.stat().st_mode & stat.S_IXUSR, script


def test_env_example_holds_placeholders_only():
    for key, value in env_example().items():
        if SECRET_NAME.search(key):
            assert value == PLACEHOLDER_VALUE or value.endswith(":" + PLACEHOLDER_VALUE), key
        # nothing token-like (long run of base64/hex characters) in any value
        assert not re.search(r"[A-Za-z0-9+/_]{24,}", value), f"{key} looks like a real secret"


def test_compose_has_no_literal_secret():
    text = COMPOSE_FILE.read_text()
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_URI"):
                assert value.startswith("${"), f"{name}.{key} is a literal"
    # credentials inside URLs (scheme://user:password@host) must be interpolated too
    for password in re.findall(r"://[^:/\s@]+:([^@\s]+)@", text):
        assert password.startswith("${"), f"literal password in a URL: {password}"


def test_mlflow_server_settings():
    service = services()["mlflow"]
    args = args_of([interpolate(a) for a in service["command"]])
    assert args["--app-name"] == "basic-auth"
    hosts = args["--allowed-hosts"].split(",")
    assert {"mlflow", "localhost", "mlflow:*", "localhost:*"} <= set(hosts)
    assert args["--backend-store-uri"].startswith("postgresql://")
    assert args["--backend-store-uri"].endswith("@postgres:5432/mlflow")
    assert args["--artifacts-destination"].startswith("s3://")
    assert "--serve-artifacts" in args
    env = environment(service)
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql://")
    assert env["MLFLOW_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    text = build_file(service).read_text()
    for package in ("mlflow==3.17.2", "psycopg2-binary", "boto3", "Flask-WTF"):
        assert package in text, package
    assert "start-server.sh" in text


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_mlflow_start_script_writes_the_auth_config(tmp_path):
    """start-server.sh → basic_auth.ini that MLflow's configparser reads back verbatim."""
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$MLFLOW_AUTH_CONFIG_PATH" "$*" > "$OUT"\n')
    fake.chmod(0o755)
    password = "p%ss w0rd-with-percent"
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"),
           "MLFLOW_ADMIN_USERNAME": "admin", "MLFLOW_ADMIN_PASSWORD": password,
           "MLFLOW_AUTH_DATABASE_URI": "postgresql://mlflow:x@postgres:5432/mlflow_auth",
           "MLFLOW_AUTH_CONFIG_DIR": str(tmp_path / "auth")}
    subprocess.run(["sh", str(SCRIPTS["mlflow"]), "--app-name=basic-auth"], env=env,
                   check=True, timeout=20)
    config_path, argv = (tmp_path / "out").read_text().splitlines()
    assert argv == "server --app-name=basic-auth"
    config = configparser.ConfigParser()  # MLflow's reader, interpolation included
    config.read(config_path)
    section = config["mlflow"]
    assert section["admin_username"] == "admin"
    assert section["admin_password"] == password
    assert section["database_uri"].endswith("/mlflow_auth")
    assert section["default_permission"] == "READ"
    assert Path(config_path).stat().st_mode & 0o077 == 0, "auth config readable by others"
    # without the password it refuses to start
    env.pop("MLFLOW_ADMIN_PASSWORD")
    done = subprocess.run(["sh", str(SCRIPTS["mlflow"])], env=env, capture_output=True,
                          text=True, timeout=20, check=False)
    assert done.returncode != 0 and "MLFLOW_ADMIN_PASSWORD" in done.stderr


def test_prefect_server_uses_postgres_and_the_pinned_version():
    service = services()["prefect-server"]
    env = environment(service)
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert env["PREFECT_SERVER_API_AUTH_STRING"].startswith("${")
    pin = re.search(r'"prefect==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert service["image"] == f"prefecthq/prefect:{pin}-python3.11"


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


# -- docker compose itself, where installed -----------------------------------------------------
def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=20, check=False).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "--env-file",
                           str(ENV_EXAMPLE), "--profile", "docker-pool", "config", "-q"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
