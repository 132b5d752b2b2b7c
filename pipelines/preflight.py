"""Checks that run before any work, so a dead server, a missing store or an unwritable folder
is one line at the start instead of a retry loop or a traceback half-way through a run.

Each check raises ``UserError`` naming the variable, path or key and what to do.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ganpkg.errors import UserError
from pipelines.registry_load import resolve_tracking_uri

SERVER_TIMEOUT_S = 5.0  # a live server answers its health check in milliseconds


def answers(url: str, timeout_s: float = SERVER_TIMEOUT_S) -> str | None:
    """None when something answers HTTP at ``url``, else why not. Any HTTP status counts as an
    answer: a server that requires credentials (401) is alive."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as err:  # refused, timed out, no such host, bad URL
        reason = getattr(err, "reason", err)
        return f"{reason.__class__.__name__}: {reason}" if isinstance(reason, BaseException) \
            else str(reason)


def check_tracking_server(uri: str | None = None, write: bool = False) -> str:
    """The resolved MLflow tracking URI; an http(s) server must answer within 5 s, an sqlite
    store that exists must be a database (and writable, with ``write``)."""
    uri = resolve_tracking_uri(uri)
    store = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and store.is_file():
        check_sqlite_store(store, write)
    if uri.startswith(("http://", "https://")):
        why = answers(f"{uri.rstrip('/')}/health")
        if why is not None:
            raise UserError(f"MLFLOW_TRACKING_URI={uri}: no answer in {SERVER_TIMEOUT_S:.0f} s "
                            f"({why}); start the server or unset MLFLOW_TRACKING_URI to use "
                            f"./mlflow.db")
    return uri


def check_sqlite_store(path: Path, write: bool) -> None:
    """A damaged or read-only store file is one line naming it, before any work (MLflow would
    answer with pages of SQLAlchemy traceback, after the run directory was made)."""
    import contextlib
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode={'rw' if write else 'ro'}",
                                                uri=True, timeout=5)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if write:  # a real write, rolled back: the file and its folder must take it
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute("BEGIN IMMEDIATE")
                db.execute(f"PRAGMA user_version = {int(version)}")
                db.execute("ROLLBACK")
    except sqlite3.Error as err:
        if "locked" in str(err):  # another run writing right now: busy, not broken
            return
        raise UserError(store_refused(path, str(err))) from None


def store_refused(store: str | Path, said: str) -> str:
    """The one line for a tracking store whose database refuses: where, and what it said."""
    return (f"MLflow store {store}: {said} (damaged, or not writable here): restore it, or set "
            f"MLFLOW_TRACKING_URI to another store")


def check_store_exists(uri: str | None = None) -> str:
    """For commands that only read the registry: the store must already exist (reading must
    never create an empty ./mlflow.db in whatever folder the command ran from)."""
    uri = check_tracking_server(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise UserError(f"no MLflow store at {path}: nothing was trained from this folder; "
                            f"run this where `ganpkg run` ran, or set MLFLOW_TRACKING_URI")
    return uri


def check_prefect_server() -> None:
    """A configured PREFECT_API_URL (environment or profile) must answer within 5 s; without
    one, the commands start their own server and there is nothing to check."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return
    why = answers(f"{url.rstrip('/')}/health")
    if why is not None:
        raise UserError(f"PREFECT_API_URL={url}: no answer in {SERVER_TIMEOUT_S:.0f} s ({why}); "
                        f"start the server, or unset PREFECT_API_URL for a temporary one")


def check_writable(folder: str | Path, key: str) -> None:
    """``folder``, or the nearest existing folder above it (which creating it would write in),
    accepts a new file: read-only mounts, permissions and a full disk are reported before
    training, not at its first checkpoint. Nothing is left behind."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ganpkg-write-test-") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise UserError(f"{key}: cannot write in {existing} ({err.strerror or err})") from None
