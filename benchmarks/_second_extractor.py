"""A second, independent yardstick for the benchmarks: FID on a LeNet's features.

The gate's extractor (ganpkg.evaluation.extractor_domain) is a BatchNorm ResNet-style net with
stride-2 3×3 convolutions and average pooling, trained with Adam and a one-cycle schedule from
eval.domain.seed. This one differs in everything a recipe could overfit to: LeNet-5's 5×5
convolutions, max pooling and no BatchNorm, a 256-dim fully connected feature layer, SGD with
momentum, its own seed. It is trained here on the same `train` split (never the holdout) and
kept out of the gate, so a recipe tuned against the gate's FID is checked by one it never saw.
FID and its bootstrap standard error use torch-fidelity's and ganpkg's own code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from ganpkg.data.prepared import PreparedDataset, float_to_uint8, uint8_to_float
from ganpkg.evaluation.reference_stats import split_indices
from ganpkg.evaluation.uncertainty import bootstrap_se

SEED = 20261203


class LeNet(nn.Module):
    def __init__(self, channels: int, resolution: int, classes: int, feature_dim: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        side = ((resolution - 4) // 2 - 4) // 2
        self.features = nn.Linear(50 * side * side, feature_dim)
        self.head = nn.Linear(feature_dim, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.body(x))
        return features, self.head(F.relu(features))


class SecondExtractor:
    """``fid(generator)`` against the train split, ``floor()`` for held-out real images."""

    def __init__(self, dataset: PreparedDataset, holdout_fraction: float, epochs: int = 2,
                 batch_size: int = 128):
        self.dataset = dataset
        splits = split_indices(len(dataset), holdout_fraction)
        self.train_idx, self.holdout_idx = splits["train"], splits["holdout"]
        labels = np.asarray(dataset.labels)
        classes, targets = np.unique(labels, return_inverse=True)
        gen = torch.Generator().manual_seed(SEED)
        torch.manual_seed(SEED)
        self.net = LeNet(dataset.channels, dataset.resolution, len(classes))
        opt = torch.optim.SGD(self.net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for _ in range(epochs):
            order = self.train_idx[torch.randperm(len(self.train_idx), generator=gen).numpy()]
            for start in range(0, len(order) - batch_size + 1, batch_size):
                idx = np.sort(order[start:start + batch_size])
                x = uint8_to_float(dataset.batch_uint8(idx))
                loss = F.cross_entropy(self.net(x)[1], torch.from_numpy(targets[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval().requires_grad_(False)
        test = self.holdout_idx[:5000]
        logits = self._run(uint8_to_float(dataset.batch_uint8(test)))[1]
        self.test_accuracy = float((logits.argmax(1).numpy() == targets[test]).mean())
        self.reference = fid_features_to_statistics(self._real(self.train_idx))

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [self.net(x[i:i + 1000]) for i in range(0, len(x), 1000)]
        return torch.cat([o[0] for o in outs]).double(), torch.cat([o[1] for o in outs])

    def _real(self, idx: np.ndarray) -> torch.Tensor:
        return torch.cat([self._run(uint8_to_float(self.dataset.batch_uint8(idx[i:i + 5000])))[0]
                          for i in range(0, len(idx), 5000)])

    def _fid(self, features: torch.Tensor) -> float:
        return float(fid_statistics_to_metric(fid_features_to_statistics(features),
                                              self.reference,
                                              verbose=False)["frechet_inception_distance"])

    def measure(self, features: torch.Tensor, resamples: int = 50) -> tuple[float, float]:
        """(FID, bootstrap se) of these features against the train split."""
        se = bootstrap_se({"f": features}, lambda f: {"fid": self._fid(f["f"])}, resamples, SEED)
        return self._fid(features), se.get("fid", float("nan"))

    @torch.no_grad()
    def fid(self, generator: nn.Module, z_dim: int, n: int, seed: int = 0) -> tuple[float, float]:
        """Samples rounded to uint8 exactly as the gate's evaluation rounds them."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, z_dim, generator=gen)
        images = torch.cat([uint8_to_float(float_to_uint8(generator.eval()(z[i:i + 500])))
                            for i in range(0, n, 500)])
        return self.measure(self._run(images)[0])

    def floor(self, n: int) -> tuple[float, float]:
        """Held-out real images (as many as the generated side) against the train split."""
        pick = np.sort(np.random.RandomState(SEED).permutation(self.holdout_idx)[:n])
        return self.measure(self._real(pick))
