"""The prepared dataset format every later stage reads.

A folder holding
- ``images.npy``: uint8 array N×C×H×W (``np.load(mmap_mode="r")`` maps it, never reads it whole),
- ``labels.npy``: int64 array N (-1 where the source has no label),
- ``manifest.json``: count, shape, resize filter, source md5s, label counts, rejected files.

It is written to a temporary sibling folder and renamed into place, so a reader never sees a
half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganpkg.errors import UserError

IMAGES = "images.npy"
LABELS = "labels.npy"
MANIFEST = "manifest.json"


@dataclass
class PreparedDataset:
    """A memory-mapped prepared dataset."""

    root: Path
    images: np.ndarray  # uint8 memmap, N×C×H×W
    labels: np.ndarray  # int64, N
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[2]

    def batch_uint8(self, indices: np.ndarray) -> torch.Tensor:
        """Images at ``indices`` as a uint8 tensor (sorted reads keep the memmap sequential)."""
        order = np.argsort(indices, kind="stable")
        rows = np.empty((len(indices), *self.images.shape[1:]), dtype=np.uint8)
        rows[order] = self.images[indices[order]]
        return torch.from_numpy(rows)


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1], the generator's output range."""
    return images.float().div_(127.5).sub_(1.0)


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], rounding to nearest (exact inverse of uint8_to_float)."""
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def open_prepared(root: str | Path) -> PreparedDataset:
    """Map a prepared dataset; a missing or inconsistent folder is a UserError naming it."""
    root = Path(root)
    for name in (IMAGES, LABELS, MANIFEST):
        if not (root / name).is_file():
            raise UserError(
                f"{root / name}: missing; run `ganpkg data prepare` (or `dvc repro prepare`) first"
            )
    images = np.load(root / IMAGES, mmap_mode="r")
    labels = np.load(root / LABELS)
    manifest = json.loads((root / MANIFEST).read_text())
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise UserError(f"{root / IMAGES}: expected uint8 N×C×H×W square images, got "
                        f"{images.dtype} {images.shape}")
    if len(labels) != len(images) or manifest.get("count") != len(images):
        raise UserError(f"{root}: images, labels and manifest.json disagree on the count")
    if len(images) == 0:
        raise UserError(f"{root}: the prepared dataset is empty")
    return PreparedDataset(root, images, labels, manifest)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully written folder into place.

    Rename the old folder aside, the new one in, then delete the old: at every instant `target`
    is either the complete old or the complete new folder. Files are replaced, never rewritten
    in place, so DVC cache links (hardlink/symlink cache types) stay intact.
    """
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)


def write_prepared(
    root: str | Path, images: np.ndarray, labels: np.ndarray, manifest: dict[str, Any]
) -> Path:
    """Write images/labels/manifest to a temp folder beside ``root``, then rename it into place."""
    root = Path(root)
    assert images.dtype == np.uint8 and images.ndim == 4, images.shape
    assert len(labels) == len(images)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        np.save(tmp / IMAGES, np.ascontiguousarray(images))
        np.save(tmp / LABELS, np.asarray(labels, dtype=np.int64))
        full = {"count": len(images), "shape": list(images.shape[1:]), **manifest}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
        replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
