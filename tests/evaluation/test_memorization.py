"""The memorization check flags copies of training images and not noise."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ganpkg.data.prepared import uint8_to_float
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import GeneratorSampler
from ganpkg.evaluation.memorization import memorization_check, nearest_neighbours


class CopyGenerator(torch.nn.Module):
    """A generator that memorized its data: each z returns one training image, unchanged."""

    def __init__(self, images: np.ndarray):
        super().__init__()
        self.images = uint8_to_float(torch.from_numpy(np.array(images)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long() % len(self.images)
        return self.images[idx]


class NoiseGenerator(torch.nn.Module):
    """Uniform noise images, a deterministic function of z."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        proj = torch.randn(z.shape[1], 32 * 32, generator=torch.Generator().manual_seed(0))
        return torch.sin(50 * z @ proj).view(-1, 1, 32, 32)


def test_copies_of_training_images_are_flagged_and_noise_is_not(tiny, tmp_path):
    ds, cfg = tiny.dataset, tiny.cfg
    spec = resolve_extractor(cfg)
    copies = memorization_check(GeneratorSampler(CopyGenerator(ds.images)), 16, ds, cfg, spec,
                                out_dir=tmp_path)
    noise = memorization_check(GeneratorSampler(NoiseGenerator()), 16, ds, cfg, spec)
    assert copies.memorized_fraction > 0.95, copies
    assert max(copies.closest_distances) < 1e-3 * copies.median_real_nn_distance
    assert noise.memorized_fraction < 0.05, noise
    baseline = copies.real_baseline_fraction
    assert baseline == noise.real_baseline_fraction <= 2 * cfg.memorization_quantile
    assert copies.median_nn_ratio < 1e-3 and noise.median_nn_ratio > 1
    assert copies.n_samples == cfg.memorization_n_samples and copies.n_train == len(ds)

    # The PNG shows each copy beside its nearest training image (drawn 3× bigger under a
    # header row, with the distance in a third column): the two tiles are equal.
    grid = np.array(Image.open(copies.pairs_png).convert("RGB"))
    size, pad, head = 96, 6, 30
    first_pair = (grid[head:head + size, pad:pad + size],
                  grid[head:head + size, 2 * pad + size:2 * pad + 2 * size])
    assert np.array_equal(*first_pair)
    assert first_pair[0].std() > 0  # an image, not the white background
    assert noise.pairs_png is None


def test_nearest_neighbours_finds_the_closest_row_and_can_exclude_itself():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    dist, idx = nearest_neighbours(bank[[0, 2]], bank)
    assert idx.tolist() == [0, 2] and dist.tolist() == [0.0, 0.0]
    dist, idx = nearest_neighbours(bank[[0, 2]], bank, exclude=torch.tensor([0, 2]), chunk=1)
    assert idx.tolist() == [1, 3] and dist.tolist() == [1.0, 1.0]
