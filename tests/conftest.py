"""Shared fixtures: small prepared datasets and tiny configs, built in temp folders."""

import os

# Tests run tiny tensors: one thread each avoids OpenMP spin-waiting on a shared 2-core box,
# and subprocesses (CLI, torchrun) inherit the setting so results compare bit for bit.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

from ganpkg.config import load_config
from ganpkg.data.prepared import write_prepared


def make_prepared(root, n=128, channels=1, resolution=32, seed=0):
    """A prepared dataset of smooth random blobs (structure a GAN can learn a little of)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    cx, cy = rng.random((2, n, 1, 1))
    blobs = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 20)
    images = np.repeat((blobs * 255).astype(np.uint8)[:, None], channels, axis=1)
    labels = (cx[:, 0, 0] > 0.5).astype(np.int64)
    return write_prepared(root, images, labels, {"source": "synthetic"})


TINY = [
    "model.z_dim=16",
    "model.g_width=8",
    "model.d_width=8",
    "train.batch_size=16",
    "train.total_steps=12",
    "train.checkpoint_every_steps=4",
    "train.sample_every_steps=6",
    "train.log_every_steps=2",
    "train.sample_grid_size=16",
    "train.device=cpu",
]


@pytest.fixture
def tiny_overrides(tmp_path):
    """--set overrides for a seconds-long CPU run on a fresh 128-image dataset."""
    prepared = make_prepared(tmp_path / "prepared")
    return TINY + [f"data.prepared_dir={prepared}", f"train.run_dir={tmp_path / 'run'}"]


@pytest.fixture
def tiny_config(tiny_overrides):
    return load_config(None, tiny_overrides)
