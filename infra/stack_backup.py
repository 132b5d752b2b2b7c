"""Backup and restore of the loopback stack's registry (infra/local_stack.py backup/restore).

A backup is a folder: ``mlflow.dump`` (pg_dump, custom format, of the MLflow tracking and
registry database: experiments, runs, tags, registered models, versions, aliases),
``s3/<bucket>/<key>`` (every object of the stack's buckets: model and run artifacts, the DVC
remote) and ``backup.json`` (what it holds, when, from where). It holds no password: the MLflow
auth database (users and permissions) is left out, so a restored stack keeps its own
credentials. ``restore`` loads a backup into a running stack (a fresh one, or the same one
after a loss): the database is replaced (pg_restore --clean), objects are uploaded under their
keys, and MLflow's artifact URIs (``mlflow-artifacts:/…``, resolved by the server) point at
them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from stack_postgres import DB_USER, find_pg_bindir
from stack_process import StackError, load_state, say
from stack_s3 import BUCKETS, client

REGISTRY_DB = "mlflow"


def _pg(tool: str, state: dict, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    bindir = find_pg_bindir()
    if bindir is None:
        raise StackError(f"{tool}: PostgreSQL client binaries not found")
    env = dict(os.environ, PGPASSWORD=state["db_password"])  # not in argv
    done = subprocess.run([str(bindir / tool), "-h", "127.0.0.1", "-p", str(state["pg_port"]),
                           "-U", DB_USER, *args], env=env, capture_output=True, check=False,
                          **kwargs)
    if done.returncode != 0:
        raise StackError(f"{tool}: {done.stderr.decode(errors='replace').strip()[-400:]}")
    return done


def backup(stack: str | Path, dest: str | Path) -> dict:
    """Dump the registry database and every bucket into ``dest`` (created; must be empty)."""
    stack, dest = Path(stack).resolve(), Path(dest).resolve()
    state = load_state(stack)
    if not state.get("pg_port"):
        raise StackError(f"{stack}: no stack state; run `up` first")
    if dest.exists() and any(dest.iterdir()):
        raise StackError(f"{dest}: not empty; a backup goes to a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    dump = _pg("pg_dump", state, ["-Fc", "-d", REGISTRY_DB]).stdout
    (dest / "mlflow.dump").write_bytes(dump)
    objects = {}
    if state.get("s3_port"):
        s3 = client(state)
        for bucket in BUCKETS.values():
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    target = dest / "s3" / bucket / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, item["Key"], str(target))
                    keys.append(item["Key"])
            objects[bucket] = len(keys)
    info = {"stack": str(stack), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "database": REGISTRY_DB, "dump_bytes": len(dump), "objects": objects}
    (dest / "backup.json").write_text(json.dumps(info, indent=1) + "\n")
    say(f"backup: {REGISTRY_DB} ({len(dump)} bytes) and {sum(objects.values())} objects "
        f"→ {dest} in {time.monotonic() - started:.1f} s")
    return info


def restore(stack: str | Path, src: str | Path) -> dict:
    """Load a backup into the running stack: the registry database, then the objects."""
    stack, src = Path(stack).resolve(), Path(src).resolve()
    state = load_state(stack)
    if not (src / "backup.json").is_file():
        raise StackError(f"{src}: no backup.json; not a backup made by `backup`")
    info = json.loads((src / "backup.json").read_text())
    if info["objects"] and not state.get("s3_port"):
        raise StackError(f"{stack}: the backup has S3 objects but this stack has no S3 store")
    started = time.monotonic()
    _pg("pg_restore", state, ["--clean", "--if-exists", "--no-owner", "-d", REGISTRY_DB],
        input=(src / "mlflow.dump").read_bytes())
    count = 0
    if info["objects"]:
        s3 = client(state)
        for bucket in info["objects"]:
            root = src / "s3" / bucket
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                s3.upload_file(str(path), bucket, path.relative_to(root).as_posix())
                count += 1
    say(f"restore: {REGISTRY_DB} and {count} objects from {src} into {stack} in "
        f"{time.monotonic() - started:.1f} s")
    return {**info, "restored_objects": count}
