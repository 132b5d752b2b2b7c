"""Shared by the tests of infra/: paths, parsers of compose.yaml, .env.example, the pool
templates, prefect.yaml and the runbook."""

import functools
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


INFRA = ROOT / "infra"


COMPOSE_FILE = INFRA / "compose.yaml"


ENV_EXAMPLE = INFRA / ".env.example"


RUNBOOK = ROOT / "docs" / "production.md"


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


@functools.cache  # read once; nobody changes the dict
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
