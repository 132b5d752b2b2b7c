"""Labelled synthetic images for benchmarks and tests: no download, any size, any seed.

Kept out of ganpkg/data: that folder is a dependency of the DVC stage `prepare`, which this
does not feed.
"""

from __future__ import annotations

import numpy as np


def labelled_shapes(n: int, seed: int = 0, res: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """uint8 n×1×res×res images of bars, discs and diagonals at random places, with labels 0–3.

    Digit-like enough for the domain extractor to learn and for FID to tell good samples from
    noise, and deterministic in ``seed``.
    """
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 4, n)
    yy, xx = np.mgrid[0:res, 0:res]
    images = np.empty((n, 1, res, res), np.uint8)
    for i, c in enumerate(labels):
        cx, cy = rng.uniform(res / 4, 3 * res / 4, 2)
        s = rng.uniform(res / 16, res / 8)
        mask = [np.abs(yy - cy) < s, np.abs(xx - cx) < s,
                (xx - cx) ** 2 + (yy - cy) ** 2 < 4 * s * s, np.abs((xx - cx) - (yy - cy)) < s][c]
        images[i, 0] = np.clip(mask * rng.uniform(150, 230) + rng.uniform(0, 25, (res, res)), 0,
                               255)
    return images, labels
