"""Helpers of the evaluation tests: tiny shape data, a small protocol, a linear generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpkg.config import DomainExtractorConfig, EvalConfig, SelfSupExtractorConfig
from ganpkg.synthetic import labelled_shapes

RES = 32
N_IMAGES = 600


def make_shapes(n: int, seed: int, res: int = RES) -> tuple[np.ndarray, np.ndarray]:
    """uint8 n×1×res×res labelled shapes (ganpkg.synthetic)."""
    return labelled_shapes(n, seed, res)


def tiny_eval_config(tmp: Path, **overrides) -> EvalConfig:
    """A small, CPU-only protocol whose files all live under `tmp`."""
    base = {
        "extractor": "domain", "n_samples": 300, "batch_size": 100, "device": "cpu",
        "cache_dir": str(tmp / "cache"), "memorization_n_samples": 150, "kid_subsets": 20,
        "domain": DomainExtractorConfig(weights=str(tmp / "extractor" / "domain.pt"),
                                        report=str(tmp / "extractor" / "domain.json"), width=16,
                                        feature_dim=32, epochs=2, batch_size=64, lr=3e-3),
        "selfsup": SelfSupExtractorConfig(weights=str(tmp / "extractor" / "selfsup.pt"),
                                          report=str(tmp / "extractor" / "selfsup.json"),
                                          width=8, feature_dim=32, projection_dim=16,
                                          prototypes=4, steps=12, batch_size=64),
    }
    return EvalConfig(**{**base, **overrides})


class LinearGenerator(torch.nn.Module):
    """Any module with the generator contract: z (N, z_dim) → (N, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int = 16, channels: int = 1, res: int = RES, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.shape = (channels, res, res)
        self.net = torch.nn.Sequential(torch.nn.Linear(z_dim, channels * res * res), torch.nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)
