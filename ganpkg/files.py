"""File plumbing every stage shares: content hashes (cached by stat) and atomic writes.

``hash_file`` is the one file-hash loop of the project (DVC's md5 for data, sha256 for weights);
``atomic_write`` the one way a file is written so that a kill at any moment leaves either the
old file or the complete new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# (algorithm, resolved path, size, mtime_ns) → hex digest: a file is hashed once per process
# unless it changes (weights are ~100 MB, prepared arrays hundreds of MB).
_DIGESTS: dict[tuple[str, str, int, int], str] = {}


def _new(algorithm: str):
    # md5 is DVC's content address, not a security check (FIPS builds refuse it otherwise).
    return hashlib.new(algorithm, usedforsecurity=algorithm != "md5")


def hash_file(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib.file_digest``), cached per path, size and mtime."""
    path = Path(path)
    stat = path.stat()
    key = (algorithm, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, lambda: _new(algorithm))
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def hash_files(paths: Iterable[str | Path], algorithm: str = "md5") -> str:
    """One digest over the bytes of several files, in the given order (not cached)."""
    digest = _new(algorithm)
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def hash_bytes(data: bytes, algorithm: str = "md5") -> str:
    """Hex digest of bytes held in memory."""
    digest = _new(algorithm)
    digest.update(data)
    return digest.hexdigest()


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_write(p) as f: f.write(...)``: written to a temp file in the same folder,
    flushed and fsynced, then renamed over ``path``; on any error the temp file is removed and
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO], object], mode: str = "wb") -> Path:
    """``write(handle)`` inside ``atomic_write``; returns ``path``."""
    with atomic_write(path, mode) as handle:
        write(handle)
    return Path(path)


def remove_partial_writes(folder: str | Path, pattern: str = ".*.tmp") -> None:
    """Temp files that a killed ``atomic_write`` left in ``folder`` (one writer per folder)."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)
