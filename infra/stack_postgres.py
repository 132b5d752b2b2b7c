"""PostgreSQL of the loopback stack (infra/local_stack.py): find, initdb, start, databases.

PostgreSQL refuses to run as root: as root, its binaries run as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

from stack_process import StackError, free_port, save_state, say, spawn, write_private

DB_USER = "ganpkg"
DATABASES = ("mlflow", "mlflow_auth", "prefect")
PG_TOOLS = ("initdb", "pg_ctl", "postgres")
# SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2, so name it.
PG_SQLALCHEMY = "postgresql+psycopg2"


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
    with closing(pg_connect(state)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            have = {row[0] for row in cur.fetchall()}
            for name in DATABASES:
                if name not in have:
                    cur.execute(f'CREATE DATABASE "{name}"')
    with closing(pg_connect(state, "prefect")) as conn:  # Prefect needs pg_trgm
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    say(f"postgres: databases {', '.join(DATABASES)} ready")


def db_url(state: dict, name: str, driver: str = "postgresql") -> str:
    return (f"{driver}://{DB_USER}:{state['db_password']}@127.0.0.1:{state['pg_port']}/{name}")
