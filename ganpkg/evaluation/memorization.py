"""Memorization check: how close each generated sample is to its nearest training image.

Distances are measured in the extractor's feature space. A fresh sample from the data
distribution is about as far from its nearest training image as a training image is from its
nearest *other* training image; a copied training image is at distance ~0. So the real-to-real
nearest-neighbour distances are the yardstick: a sample counts as memorized when it is closer
to a training image than the ``eval.memorization_quantile`` quantile of them (default 1%), so
fresh samples are flagged at about that rate and copies at ~100%. A fixed fraction of the
median would not do: how spread the distances are depends on the data and extractor (on
digit-like data half the median already flags ~15% of real images). ``median_nn_ratio`` (median
generated NN distance / median real NN distance, < 1 means closer than real data) is the
"typical distance" view of the same question.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganpkg.config import EvalConfig
from ganpkg.data.prepared import PreparedDataset
from ganpkg.evaluation.reference_stats import (
    UInt8Images,
    fid_layer,
    fidelity_device_kwargs,
    reference_features,
)

PAIRS_PNG = "memorization_pairs.png"


@dataclass
class MemorizationReport:
    """Result of the memorization check (JSON-able through ``as_dict``)."""

    memorized_fraction: float  # generated samples closer than the threshold to a training image
    real_baseline_fraction: float  # the same for training images vs the other training images
    threshold: float
    median_real_nn_distance: float
    median_nn_ratio: float  # median generated NN distance / median real-to-real NN distance
    n_samples: int
    n_train: int
    closest_distances: list[float]
    pairs_png: str | None = None

    def as_dict(self) -> dict:
        """Plain dict, e.g. for a JSON file or MLflow params."""
        return asdict(self)


def nearest_neighbours(query: torch.Tensor, bank: torch.Tensor, exclude: torch.Tensor | None = None,
                       chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance and index of each query row's nearest bank row.

    ``exclude[i]`` is a bank index query i may not match (itself, for real-to-real distances).
    Chunked so that memory stays at chunk × len(bank) floats.
    """
    dists, idxs = [], []
    bank = bank.double()
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start:start + chunk].double(), bank)
        if exclude is not None:
            rows = torch.arange(d.shape[0])
            d[rows, exclude[start:start + chunk]] = float("inf")
        best = d.min(dim=1)
        dists.append(best.values.clamp_min(0))
        idxs.append(best.indices)
    return torch.cat(dists), torch.cat(idxs)


def memorization_from_features(gen: torch.Tensor, train: torch.Tensor, quantile: float,
                               n_real: int, seed: int) -> dict:
    """The check on features alone: distances, threshold, fractions and nearest indices."""
    gen_dist, gen_idx = nearest_neighbours(gen, train)
    rng = np.random.RandomState(seed)
    probe = torch.from_numpy(rng.choice(len(train), min(n_real, len(train)), replace=False))
    real_dist, _ = nearest_neighbours(train[probe], train, exclude=probe)
    median = float(real_dist.median())
    # Data with many exact duplicates has a 0 quantile; copies must still count as memorized.
    threshold = max(float(torch.quantile(real_dist, quantile)), 1e-4 * median)
    return {
        "gen_dist": gen_dist, "gen_idx": gen_idx, "median": median, "threshold": threshold,
        "median_nn_ratio": float(gen_dist.median()) / max(median, 1e-12),
        "memorized_fraction": float((gen_dist < threshold).double().mean()),
        "real_baseline_fraction": float((real_dist < threshold).double().mean()),
    }


def save_pairs(generated: torch.Tensor, nearest: torch.Tensor, distances: list[float],
               threshold: float, path: str | Path) -> Path:
    """uint8 B×3×H×W images → a labeled PNG, closest pair first: one row per pair with the
    generated sample, its nearest training image and their feature distance (memorized below
    the threshold). Small images are drawn bigger, so a reviewer can compare them."""
    from PIL import ImageDraw

    height, width = generated.shape[-2:]
    scale = max(1, 96 // max(height, width))
    tile_w, tile_h, pad, head, text_w = width * scale, height * scale, 6, 30, 250
    canvas = Image.new("RGB", (4 * pad + 2 * tile_w + text_w,
                               head + len(generated) * (tile_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    columns = (pad, 2 * pad + tile_w, 3 * pad + 2 * tile_w)
    for x, label in zip(columns, ("generated", "nearest\ntraining image",
                                  "feature distance"), strict=True):
        draw.multiline_text((x, 2), label, fill="black")
    for i, (gen, real, dist) in enumerate(zip(generated, nearest, distances, strict=True)):
        y = head + i * (tile_h + pad)
        for x, image in zip(columns, (gen, real), strict=False):
            array = image.permute(1, 2, 0).numpy()
            tile = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).convert(
                "RGB").resize((tile_w, tile_h), Image.NEAREST)
            canvas.paste(tile, (x, y))
        verdict = "below: memorized" if dist < threshold else "above: not memorized"
        draw.multiline_text((columns[2], y + 2), f"{dist:.3g}\n(threshold {threshold:.3g};\n"
                                                 f"{verdict})", fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


@torch.no_grad()
def generated_uint8(sampler: nn.Module, z_dim: int, n: int, seed: int, batch_size: int,
                    device: torch.device) -> torch.Tensor:
    """n uint8 samples from the z torch-fidelity would draw with this seed (same noise source)."""
    rng = np.random.RandomState(seed)
    out = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        z = torch.from_numpy(rng.randn(size, z_dim)).float().to(device)
        out.append(sampler(z).cpu())
    return torch.cat(out)


@torch.no_grad()
def memorization_check(sampler: nn.Module, z_dim: int, dataset: PreparedDataset,
                       cfg: EvalConfig, spec, out_dir: str | Path | None = None
                       ) -> MemorizationReport:
    """Nearest training image of each of eval.memorization_n_samples generated samples.

    ``sampler`` maps z to uint8 B×3×H×W (``fidelity.GeneratorSampler``); ``spec`` is the
    resolved extractor. The training images' features come through ganpkg's reference cache.
    With ``out_dir``, the closest pairs are saved there as ``memorization_pairs.png``.
    """
    from torch_fidelity.utils import create_feature_extractor

    layer = fid_layer(spec)
    cuda = fidelity_device_kwargs(cfg.device)["cuda"]
    device = torch.device("cuda" if cuda else "cpu")
    # One extractor (one weights load) for the training images and the samples.
    extractor = create_feature_extractor(spec.fidelity_name, [layer], cuda=cuda, verbose=False,
                                         feature_extractor_weights_path=spec.weights_path)
    train = reference_features(dataset, cfg, spec, split="all", extractor=extractor)[layer]
    sampler = sampler.to(device).eval()
    images = generated_uint8(sampler, z_dim, cfg.memorization_n_samples, cfg.seed,
                             cfg.batch_size, device)
    gen = torch.cat([extractor(chunk.to(device))[0].cpu()
                     for chunk in images.split(cfg.batch_size)])
    # At least 1000 real probes: the threshold is a low quantile of their distances.
    found = memorization_from_features(gen, train, cfg.memorization_quantile,
                                       n_real=max(1000, cfg.memorization_n_samples),
                                       seed=cfg.seed + 1)
    k = min(cfg.memorization_pairs, len(gen))
    closest = torch.argsort(found["gen_dist"])[:k]
    pairs_png = None
    if out_dir is not None:
        real = UInt8Images(dataset.images, found["gen_idx"][closest].numpy())
        pairs_png = str(save_pairs(images[closest], real.batch(0, k),
                                   [float(d) for d in found["gen_dist"][closest]],
                                   float(found["threshold"]), Path(out_dir) / PAIRS_PNG))
    return MemorizationReport(
        memorized_fraction=found["memorized_fraction"],
        real_baseline_fraction=found["real_baseline_fraction"],
        threshold=found["threshold"], median_real_nn_distance=found["median"],
        median_nn_ratio=found["median_nn_ratio"],
        n_samples=len(gen), n_train=len(train),
        closest_distances=[float(d) for d in found["gen_dist"][closest]], pairs_png=pairs_png,
    )
