"""Stage `ingest`: source → ``data/``, the raw snapshot that data.dvc tracks.

The snapshot is deterministic: the same source gives the same files with the same bytes, and
``snapshot.json`` (source name, each file's path/size/md5, files skipped and why) holds no
time stamp, host or absolute path, so the directory md5 in data.dvc is reproducible on any
machine. It is built in a temporary sibling folder and renamed into place, so an interrupted
ingest never leaves a half-written ``data/``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganpkg.config import DataConfig
from ganpkg.data.prepared import replace_dir
from ganpkg.data.sources import SNAPSHOT, get_source, is_ignored, sorted_files
from ganpkg.errors import UserError
from ganpkg.files import hash_bytes, hash_file

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class IngestResult:
    """What ingest wrote: where, how many files, which were skipped, the snapshot's md5."""

    raw_dir: Path
    source: str
    files: int
    total_bytes: int
    skipped: list[dict[str, str]]
    snapshot_md5: str


def snapshot_bytes(source: str, root: Path, skipped: list[tuple[str, str]]) -> bytes:
    """The canonical ``snapshot.json`` for the files under ``root`` (sorted, no time stamps)."""
    files = [
        {"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "md5": hash_file(p, "md5")}
        for p in sorted_files(root)
        if p.relative_to(root).as_posix() != SNAPSHOT
    ]
    record = {
        "format": SNAPSHOT_FORMAT,
        "source": source,
        "files": files,
        "skipped": [{"path": p, "reason": r} for p, r in sorted(skipped) if not is_ignored(r)],
    }
    ignored = [{"path": p, "reason": r} for p, r in sorted(skipped) if is_ignored(r)]
    if ignored:  # (absent when empty: snapshots without such files keep their bytes)
        record["ignored"] = ignored
    return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()


def read_snapshot(raw_dir: str | Path) -> dict:
    """Load ``data/snapshot.json``; a missing snapshot says how to make one."""
    path = Path(raw_dir) / SNAPSHOT
    if not path.is_file():
        raise UserError(f"{path}: missing; run `ganpkg data ingest` (or `dvc pull data.dvc`) first")
    try:
        snapshot = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({err}); run `ganpkg data ingest` again") from None
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        raise UserError(f"{path}: snapshot format {snapshot.get('format')!r} is not "
                        f"{SNAPSHOT_FORMAT}; run `ganpkg data ingest` again")
    return snapshot


def ingest(config: DataConfig, log: Callable[[str], None] | None = None) -> IngestResult:
    """Copy ``config.source`` into ``config.raw_dir`` deterministically (see module docstring)."""
    source = get_source(config.source)
    target = Path(config.raw_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged.chmod(0o755)  # mkdtemp's 0700 would make data/ private to this user
    try:
        skipped = source.ingest(config, staged)
        data = snapshot_bytes(source.name, staged, skipped)
        (staged / SNAPSHOT).write_bytes(data)
        record = json.loads(data)
        if not record["files"]:
            raise UserError(f"source {source.name}: nothing to ingest")
        replace_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if log:
        for item in record["skipped"] + record.get("ignored", []):
            log(f"skipped {item['path']}: {item['reason']}")
    return IngestResult(
        raw_dir=target,
        source=source.name,
        files=len(record["files"]),
        total_bytes=sum(f["bytes"] for f in record["files"]),
        skipped=record["skipped"],
        snapshot_md5=hash_bytes(data, "md5"),
    )
