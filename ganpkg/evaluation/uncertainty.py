"""How sure a metric is: a bootstrap over the generated samples' features.

The reference statistics are fixed (cached), so the noise in a generator's FID/KID/IS comes
from which samples it drew. Resampling those samples' features with replacement and
recomputing the metric with torch-fidelity's own functions gives its standard error without a
single extra generator pass. The interval is the value ± z·se at eval.confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import torch

Features = dict[str, torch.Tensor]


def bootstrap_se(features: Features, measure: Callable[[Features], dict[str, float]],
                 resamples: int, seed: int) -> dict[str, float]:
    """Standard error of each of ``measure``'s values over ``resamples`` resamples of the rows
    of ``features`` (every layer resampled with the same indices)."""
    n = len(next(iter(features.values())))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = torch.from_numpy(rng.integers(0, n, n))
        for key, value in measure({k: v[index] for k, v in features.items()}).items():
            draws.setdefault(key, []).append(value)
    return {k: float(np.std(v, ddof=1)) for k, v in draws.items() if len(v) > 1}


def interval(value: float, se: float, confidence: float) -> tuple[float, float]:
    """value ± z·se, z the two-sided normal quantile of ``confidence``."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return value - z * se, value + z * se
