"""train.data_on_device: batches drawn from a device copy of the prepared images are the same
images in the same order as batches read from the memmap, so training gives the same weights."""

from __future__ import annotations

import torch

from ganpkg.config import load_config
from ganpkg.training import train


def test_device_copy_and_memmap_train_the_same_weights(tiny_overrides, tmp_path):
    weights = []
    for mode in ("always", "never"):
        config = load_config(None, [*tiny_overrides, "train.total_steps=4",
                                    f"train.data_on_device={mode}",
                                    f"train.run_dir={tmp_path / mode}"])
        result = train(config)
        weights.append(torch.load(result.checkpoint, weights_only=True)["g_ema"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
