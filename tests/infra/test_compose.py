"""infra/compose.yaml, .env.example and the scripts it runs, checked without Docker.

Nothing here starts a container: these guard the contracts between the files (every variable
in .env.example, no committed secret, health-gated start order, GPU reservation, Prefect's
template rule that every ``{{ var }}`` is declared) so that a broken stack fails in CI rather
than on the GPU host. ``docker compose config`` runs too where the compose plugin exists.
"""

import configparser
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from infra_helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ONE_SHOT,
    PLACEHOLDER_VALUE,
    PUBLISHED,
    REQUIRED_SERVICES,
    ROOT,
    SCRIPTS,
    SECRET_NAME,
    VAR_REF,
    args_of,
    build_file,
    env_example,
    environment,
    interpolate,
    load_compose,
    services,
    strings_in,
)


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
