"""Stage `prepare`: ``data/`` → ``prepared/`` (uint8 N×C×R×R memmap, labels, manifest.json).

Reads params ``data.source``, ``data.split``, ``data.raw_dir``, ``data.prepared_dir``,
``data.resolution``, ``data.channels``, ``data.max_images`` and ``data.strict`` — exactly the
keys dvc.yaml lists for the stage — and nothing else.

Policy for bad input: by default a file that cannot become an image (corrupt, truncated,
zero-byte, not an image, a decompression bomb, unreadable, a duplicate of an earlier file) is
skipped and recorded in the manifest with its reason; with ``data.strict`` the first one is a
UserError. Zero usable images is always a UserError. ``data/`` is only ever read. Images are
decoded into a scratch memmap (so memory stays flat for large folders) and the result is
written by ``write_prepared``, which renames a complete folder into place: a failed prepare
leaves the previous ``prepared/`` (or none) and no partial one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganpkg.config import DataConfig
from ganpkg.data.images import (
    ALPHA_POLICY,
    MAX_PIXELS,
    RESIZE_FILTER_NAME,
    Converted,
    RejectedImage,
    convert_image,
)
from ganpkg.data.ingest import read_snapshot
from ganpkg.data.prepared import write_prepared
from ganpkg.data.sources import SNAPSHOT, Item, get_source
from ganpkg.errors import UserError
from ganpkg.files import hash_file

PREPARED_FORMAT = "ganpkg-prepared/1"
MAX_LISTED_MD5S = 1000  # beyond this the snapshot's md5 stands for the per-file md5s
CHUNK = 512  # images handed to the thread pool at a time (bounded memory, ordered results)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PrepareResult:
    """What prepare wrote and what it refused."""

    prepared_dir: Path
    accepted: int
    rejected: list[dict[str, str]]
    shape: tuple[int, int, int, int]
    manifest: dict


def _convert(item: Item, resolution: int, channels: int):
    # Runs in a worker thread: PIL releases the GIL while decoding and resizing.
    try:
        fetched = item.fetch()
        return fetched, convert_image(fetched.image, resolution, channels)
    except RejectedImage as err:
        return None, err


def _converted_stream(
    items: list[Item], resolution: int, channels: int, workers: int
) -> Iterator[tuple[Item, object, Converted | RejectedImage]]:
    # Chunked map keeps results in source order (the prepared array's order is deterministic)
    # while never queueing more than CHUNK decoded images.
    if workers <= 1:
        for item in items:
            yield item, *_convert(item, resolution, channels)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            results = pool.map(lambda it: _convert(it, resolution, channels), chunk)
            for item, (fetched, out) in zip(chunk, results, strict=True):
                yield item, fetched, out


def _strict_error(raw: Path, path: str, reason: str) -> UserError:
    return UserError(f"{raw / path}: {reason} (data.strict is true; set data.strict=false to "
                     "skip such files and record them in the manifest)")


@dataclass
class _Tally:
    """Running counts of one prepare pass (what the manifest reports besides the arrays)."""

    rejected: list[dict[str, str]] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # bytes md5 → first path with them
    counts: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    accepted: int = 0


def _fill(stream, images: np.ndarray, labels: np.ndarray, tally: _Tally, strict: bool,
          raw: Path, progress: Progress | None, total: int) -> None:
    """Write accepted images into ``images``/``labels`` in order until they are full."""
    for done, (item, fetched, out) in enumerate(stream, start=1):
        if progress and (done % 256 == 0 or done == total):
            progress(done, total)
        if isinstance(out, RejectedImage):
            reason = out.reason
        elif fetched.digest is not None and fetched.digest in tally.seen:
            reason = f"duplicate of {tally.seen[fetched.digest]} (same bytes)"
        else:
            reason = None
        if reason is not None:
            if strict:
                raise _strict_error(raw, item.key, reason)
            tally.rejected.append({"path": item.key, "reason": reason})
            continue
        if fetched.digest is not None:
            tally.seen[fetched.digest] = item.key
        images[tally.accepted] = out.pixels
        labels[tally.accepted] = fetched.label
        tally.counts["upscaled"] += out.upscaled
        tally.counts["cropped"] += out.cropped
        tally.modes[out.source_mode] += 1
        tally.accepted += 1
        if tally.accepted == len(labels):  # data.max_images reached
            return


def prepare(
    config: DataConfig, progress: Progress | None = None, workers: int | None = None
) -> PrepareResult:
    """Build ``config.prepared_dir`` from the snapshot in ``config.raw_dir`` (module docstring)."""
    raw = Path(config.raw_dir)
    snapshot = read_snapshot(raw)
    if snapshot["source"] != config.source:
        raise UserError(f"{raw / SNAPSHOT}: holds a {snapshot['source']!r} snapshot but "
                        f"data.source is {config.source!r}; run `ganpkg data ingest` first")
    listing = get_source(config.source).items(raw, snapshot, config)
    tally = _Tally()
    for skipped in snapshot["skipped"]:  # files ingest could not even read
        if config.strict:
            raise _strict_error(raw, skipped["path"], skipped["reason"])
        tally.rejected.append(dict(skipped))
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if listing.parallel else 1

    res, ch = config.resolution, config.channels
    total = len(listing.items)
    capacity = max(1, min(total, config.max_images or total))
    prepared = Path(config.prepared_dir)
    prepared.parent.mkdir(parents=True, exist_ok=True)
    # Decoded images go to a scratch memmap beside prepared/, not to RAM: a folder of 200k
    # 128×128 RGB images is 10 GB.
    scratch = Path(tempfile.mkdtemp(prefix=f".{prepared.name}.scratch.", dir=prepared.parent))
    images = None
    try:
        images = np.lib.format.open_memmap(scratch / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(capacity, ch, res, res))
        labels = np.empty(capacity, dtype=np.int64)
        with closing(_converted_stream(listing.items, res, ch, workers)) as stream:
            _fill(stream, images, labels, tally, config.strict, raw, progress, total)
        n = tally.accepted
        if n == 0:
            reasons = "; ".join(f"{r['path']}: {r['reason']}" for r in tally.rejected[:3])
            raise UserError(f"{raw}: no usable image among {total} "
                            f"({len(tally.rejected)} rejected{': ' + reasons if reasons else ''})")
        manifest = _manifest(config, raw, snapshot, listing.classes, labels[:n], tally)
        images.flush()
        write_prepared(prepared, images[:n], labels[:n], manifest)
    finally:
        del images  # unmap before the scratch file goes
        shutil.rmtree(scratch, ignore_errors=True)
    return PrepareResult(prepared, n, tally.rejected, (n, ch, res, res), manifest)


def _manifest(config: DataConfig, raw: Path, snapshot: dict, classes: list[str],
              labels: np.ndarray, tally: _Tally) -> dict:
    # Deterministic (no time stamps, no absolute paths): the same snapshot and params give a
    # byte-identical prepared/, so its md5 in dvc.lock is itself a lineage fact.
    values, freq = np.unique(labels, return_counts=True)
    files = snapshot["files"]
    return {
        "format": PREPARED_FORMAT,
        "source": config.source,
        "split": config.split,
        "resolution": config.resolution,
        "channels": config.channels,
        "max_images": config.max_images,
        "resize_filter": RESIZE_FILTER_NAME,
        "crop": "centre square, then resize (upscaling images smaller than the resolution)",
        "alpha": ALPHA_POLICY,
        "max_pixels": MAX_PIXELS,
        "snapshot_md5": hash_file(raw / SNAPSHOT, "md5"),
        "source_files": len(files),
        "source_md5s": ({f["path"]: f["md5"] for f in files}
                        if len(files) <= MAX_LISTED_MD5S else "see snapshot_md5"),
        "classes": classes,
        "label_counts": {str(int(v)): int(c) for v, c in zip(values, freq, strict=True)},
        "accepted": len(labels),
        "rejected_count": len(tally.rejected),
        "rejected": tally.rejected,
        **({"ignored": snapshot["ignored"]} if snapshot.get("ignored") else {}),
        "upscaled": int(tally.counts["upscaled"]),
        "cropped": int(tally.counts["cropped"]),
        "source_modes": dict(sorted(tally.modes.items())),
    }
