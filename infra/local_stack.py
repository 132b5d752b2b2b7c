#!/usr/bin/env python3
"""A real stack on loopback: PostgreSQL, MLflow (basic-auth, proxied artifacts), Prefect server.

    python infra/local_stack.py up   [--dir .stack]   # start all three, write and print <dir>/env
    python infra/local_stack.py env  [--dir .stack]   # print <dir>/env again
    python infra/local_stack.py down [--dir .stack]   # stop what `up` started, by PID
                                    [--purge]         # ... and delete its databases

Then ``source .stack/env`` (MLFLOW_TRACKING_URI/USERNAME/PASSWORD, PREFECT_API_URL) and
``ganpkg run`` talks to the servers with no code change. Everything listens on 127.0.0.1 only;
passwords are generated per stack (kept in <dir>/stack.json, mode 0600), never in the repo.
A second ``up`` on the same --dir reuses its databases. PostgreSQL refuses to run as root: as
root, its binaries run as the ``postgres`` user (Debian's package creates it).

Importable too: ``up(dir) -> env dict``, ``down(dir) -> list of stopped PIDs``, ``read_env(dir)``.
Needs only the standard library and psycopg2, plus the mlflow and prefect executables installed
beside this Python.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DB_USER = "ganpkg"
DATABASES = ("mlflow", "mlflow_auth", "prefect")
SERVICES = ("prefect", "mlflow", "postgres")
PG_TOOLS = ("initdb", "pg_ctl", "postgres")
# SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2, so name it.
PG_SQLALCHEMY = "postgresql+psycopg2"


class StackError(RuntimeError):
    """One line that names the service and where to look."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# --- helpers ---------------------------------------------------------------------------------

def find_pg_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when PostgreSQL is absent."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=False)
        candidates.append(out.stdout.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                                   if x.isdigit()], reverse=True)
    postgres = shutil.which("postgres")
    if postgres:
        candidates.append(str(Path(postgres).resolve().parent))
    for candidate in candidates:
        if candidate and all(os.access(Path(candidate, t), os.X_OK) for t in PG_TOOLS):
            return Path(candidate)
    return None


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise StackError("no free port on 127.0.0.1")


def as_postgres_user() -> list[str]:
    """Command prefix that drops root to the `postgres` user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root, and PostgreSQL refuses root, but there is no "
                         "`postgres` user to run it as (create one: useradd -r postgres)") from None
    if shutil.which("setpriv"):  # execs in place: the PID we record is postgres itself
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    return ["runuser", "-u", "postgres", "--"]


def chown_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, user.pw_uid, user.pw_gid)


def executable(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name}: executable not found beside {sys.executable} nor on PATH")
    return found


def spawn(name: str, cmd: list[str], stack: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start CMD in its own session, output to <stack>/<name>.log, PID to <stack>/<name>.pid."""
    log = stack / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    (stack / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(name: str, proc: subprocess.Popen, log: Path, check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise StackError(f"{name} exited (code {proc.returncode}) while starting; see {log}")
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise StackError(f"{name} not healthy after {timeout:.0f} s; see {log}")


def pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pids(pids: list[int], timeout: float = 20) -> None:
    """SIGTERM the process groups the PIDs lead (every start is a new session), wait, SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        live = [pid for pid in pids if pid_alive(pid)]
        if not live:
            break
        for pid in live:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(pid_alive(pid) for pid in live) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in pids:  # leftovers of the groups (workers) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


# --- state -----------------------------------------------------------------------------------

def load_state(stack: Path) -> dict:
    path = stack / "stack.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(stack: Path, state: dict) -> None:
    write_private(stack / "stack.json", json.dumps(state, indent=1) + "\n")


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


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

def pg_root_for(stack: Path, prefix: list[str]) -> Path:
    """Where PostgreSQL's files live: <dir>/postgres, or (as root, when the postgres user cannot
    reach --dir, e.g. under pytest's 0700 temp folders) a private folder under the temp dir."""
    if not prefix or subprocess.run([*prefix, "test", "-x", str(stack)], cwd="/",
                                      check=False).returncode == 0:
        return stack / "postgres"
    return Path(tempfile.mkdtemp(prefix="ganpkg-stack-pg-"))


def start_postgres(stack: Path, state: dict) -> subprocess.Popen:
    bindir = find_pg_bindir()
    if bindir is None:
        raise StackError("postgres: no PostgreSQL server binaries (initdb, pg_ctl, postgres) in "
                         "`pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH; "
                         "install them (apt-get install postgresql)")
    prefix = as_postgres_user()
    root = Path(state["pg_root"]) if state.get("pg_root") else None
    if root is None or not (root / "data" / "PG_VERSION").is_file():
        root = pg_root_for(stack, prefix)
        root.mkdir(parents=True, exist_ok=True)
        state["pg_root"] = str(root)
        state["db_password"] = secrets.token_urlsafe(24)
        (root / "socket").mkdir(exist_ok=True)
        pwfile = root / "pwfile"
        write_private(pwfile, state["db_password"] + "\n")
        chown_postgres(root)
        say(f"postgres: initdb {root / 'data'} ({bindir})")
        init = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(root / "data"), "-U", DB_USER,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"],
            cwd=root, capture_output=True, text=True, check=False)
        pwfile.unlink()
        if init.returncode != 0:
            (stack / "postgres.log").write_text(init.stdout + init.stderr)
            raise StackError(f"postgres: initdb failed; see {stack / 'postgres.log'}")
    save_state(stack, state)
    state["pg_port"] = free_port(state.get("pg_port"))
    say(f"postgres: starting on 127.0.0.1:{state['pg_port']}")
    return spawn("postgres", [*prefix, str(bindir / "postgres"), "-D", str(root / "data"),
                              "-p", str(state["pg_port"]), "-c", "listen_addresses=127.0.0.1",
                              "-k", str(root / "socket")], stack, cwd=root)


def pg_connect(state: dict, dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=state["pg_port"], user=DB_USER,
                            password=state["db_password"], dbname=dbname, connect_timeout=3)


def pg_ready(state: dict) -> bool:
    import psycopg2

    try:
        pg_connect(state).close()
        return True
    except psycopg2.OperationalError:
        return False


def create_databases(state: dict) -> None:
    conn = pg_connect(state)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        have = {row[0] for row in cur.fetchall()}
        for name in DATABASES:
            if name not in have:
                cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    conn = pg_connect(state, "prefect")  # Prefect needs pg_trgm
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    conn.close()
    say(f"postgres: databases {', '.join(DATABASES)} ready")


def db_url(state: dict, name: str, driver: str = "postgresql") -> str:
    return (f"{driver}://{DB_USER}:{state['db_password']}@127.0.0.1:{state['pg_port']}/{name}")


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
    (stack / "artifacts").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini),
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
               MLFLOW_BACKEND_STORE_URI=db_url(state, "mlflow", PG_SQLALCHEMY))  # not in argv
    # Its GenAI job runner (8 huey worker processes) serves nothing ganpkg uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    say(f"mlflow: starting on 127.0.0.1:{port} (basic-auth, artifacts in {stack / 'artifacts'})")
    return spawn("mlflow", [
        executable("mlflow"), "server", "--app-name", "basic-auth",
        "--artifacts-destination", str(stack / "artifacts"), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"], stack, env=env, cwd=stack)


def start_prefect(stack: Path, state: dict) -> subprocess.Popen:
    state["prefect_port"] = port = free_port(state.get("prefect_port"))
    home = stack / "prefect-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home),
               PREFECT_API_DATABASE_CONNECTION_URL=db_url(state, "prefect", "postgresql+asyncpg"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    say(f"prefect: starting on 127.0.0.1:{port} (database: postgres `prefect`)")
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
           "MLFLOW_TRACKING_PASSWORD": state["admin_password"], "PREFECT_API_URL": urls["prefect"]}
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
        for name in ("stack.json", "env", "basic_auth.ini"):
            (stack / name).unlink(missing_ok=True)
    if not quiet:
        say(f"down: stopped {len(stopped)} process(es)" + (", data deleted" if purge else ""))
    return stopped


# --- CLI -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "env"))
    parser.add_argument("--dir", default=".stack", help="state, logs, data (default: .stack)")
    parser.add_argument("--timeout", type=float, default=180,
                        help="seconds to wait for each server's health check (default: 180)")
    parser.add_argument("--purge", action="store_true",
                        help="down: also delete the databases and the stack's passwords")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.dir, args.timeout)
        elif args.command == "down":
            down(args.dir, purge=args.purge)
            return 0
        env_file = Path(args.dir, "env")
        if not env_file.is_file():
            raise StackError(f"{env_file}: not found; run `up` first")
        print(env_file.read_text(), end="")
    except StackError as err:
        print(f"[stack] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
