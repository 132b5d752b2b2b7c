"""A label-free feature extractor: the domain network's body trained by contrast (SimCLR's NT-Xent)
on the prepared images alone, so any folder of images gets a yardstick offline.

Why contrastive, and why only geometric augmentations: Morozov et al. (ICLR 2021) show that
self-supervised representations rank GANs at least as well as a supervised classifier's. A
contrastive network is invariant to exactly what its augmentations change, so it is trained with
crops, small translations and (optionally) flips, never with blur, noise or contrast: a yardstick
blind to those could not tell a blurry or noisy generator from a sharp one.

FID/KID/PR use the encoder's features (before the projection head, as SimCLR recommends). IS needs
class probabilities, which a label-free network has not: its logits are cosine similarities to
``prototypes`` spherical k-means centres of the training features (a fixed temperature), so
``is_selfsup`` reads as "confident and diverse over the data's own clusters".

Trained bit-reproducibly (``runtime.reproducible``): one thread, deterministic kernels, fixed
data order and augmentation draws from eval.selfsup.seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ganpkg.data.prepared import PreparedDataset, uint8_to_float
from ganpkg.device import resolve_device
from ganpkg.errors import UserError
from ganpkg.evaluation.extractor_domain import (
    SELFSUP_FORMAT,
    DomainNet,
    build_extractor_net,
    save_extractor,
)
from ganpkg.evaluation.reference_stats import prepared_md5, split_indices
from ganpkg.runtime import cpu_code_paths, reproducible

if TYPE_CHECKING:
    from ganpkg.config import EvalConfig

def augment(x: torch.Tensor, generator: torch.Generator, min_crop_area: float,
            max_shift: float, flip: bool) -> torch.Tensor:
    """Random geometric views of a float batch: a square crop of min_crop_area..1 of the image,
    moved by up to ``max_shift`` of the side beyond the crop's own room, optionally mirrored;
    resampled bilinearly, borders replicated (no black frames the metric could key on)."""
    n = x.shape[0]
    uniform = torch.rand(n, 4, generator=generator)
    side = torch.sqrt(min_crop_area + (1 - min_crop_area) * uniform[:, 0])
    room = (1 - side) + max_shift
    shift = (2 * uniform[:, 1:3] - 1) * room[:, None]
    mirror = torch.where((uniform[:, 3] < 0.5) & flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = side * mirror
    theta[:, 1, 1] = side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2B−1 other views of the batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    n = z1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


@torch.no_grad()
def encode(net: DomainNet, dataset: PreparedDataset, indices: np.ndarray, batch_size: int,
           device: torch.device) -> torch.Tensor:
    """Features (encoder output) of the prepared images at `indices`, on the CPU."""
    net.eval()
    out = [net.features(net.body(uint8_to_float(dataset.batch_uint8(indices[s:s + batch_size]))
                                 .to(device))).cpu()
           for s in range(0, len(indices), batch_size)]
    return torch.cat(out)


def spherical_kmeans(features: torch.Tensor, k: int, seed: int, iterations: int = 25
                     ) -> torch.Tensor:
    """k unit-norm centres of the features (cosine k-means, seeded init, fixed iterations)."""
    points = F.normalize(features, dim=1)
    k = min(k, len(points))
    pick = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:k]
    centres = points[pick].clone()
    for _ in range(iterations):
        assign = (points @ centres.t()).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        empty = sums.norm(dim=1) == 0
        centres = torch.where(empty[:, None], centres, F.normalize(sums, dim=1))
    return centres


def _fit(dataset: PreparedDataset, cfg, train_idx: np.ndarray, dev: torch.device,
         progress: Callable[[int, int], None] | None) -> DomainNet:
    """NT-Xent with Adam + one-cycle, data order and augmentations drawn from cfg.seed."""
    # The projection head is DomainNet's own head at proj_dim outputs; replaced after training.
    net = DomainNet(dataset.channels, cfg.projection_dim, cfg.width, cfg.feature_dim,
                    first_stride(dataset.resolution)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    rng, views = np.random.RandomState(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    every = max(1, cfg.steps // 10)
    per_pass = len(train_idx) // cfg.batch_size  # full batches only: NT-Xent's negatives
    net.train()
    for step in range(cfg.steps):
        if step % per_pass == 0:
            order = rng.permutation(train_idx)
        at = (step % per_pass) * cfg.batch_size
        x = uint8_to_float(dataset.batch_uint8(order[at:at + cfg.batch_size]))
        pair = [augment(x, views, cfg.min_crop_area, cfg.max_shift, cfg.flip) for _ in range(2)]
        _, z = net(torch.cat(pair).to(dev))
        loss = nt_xent(*z.chunk(2), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None and ((step + 1) % every == 0 or step + 1 == cfg.steps):
            progress(step + 1, cfg.steps)
    return net


def first_stride(resolution: int) -> int:
    """64 px and up: the first convolution halves the image, so training costs what it costs at
    half the side (the features still see every pixel through the 3×3 kernel)."""
    return 1 if resolution <= 32 else 2


def train_selfsup_extractor(dataset: PreparedDataset, cfg: EvalConfig,
                            out: str | Path | None = None, device: str = "auto",
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Train the label-free extractor on the `train` split (labels unused), save it.

    The report (eval.selfsup.report) gives what a label-free network can say of itself: the
    held-out images' mean cosine similarity to their own augmented view against to other images'
    (alignment and spread), the prototypes' occupancy, data md5 and sha256.
    """
    sup = cfg.selfsup
    report = Path(out).with_suffix(".json") if out else Path(sup.report)
    out = Path(out or sup.weights)
    splits = split_indices(len(dataset), cfg.holdout_fraction)
    if len(splits["train"]) < sup.batch_size:
        raise UserError(f"{dataset.root}: {len(splits['train'])} training images, fewer than "
                        f"eval.selfsup.batch_size ({sup.batch_size}): lower it")
    dev = resolve_device(device, "the label-free extractor's device")
    with reproducible(sup.seed):
        net = _fit(dataset, sup, splits["train"], dev, progress).cpu()
        # k-means needs no more than 10k points to place 16 centres; a fixed pick of the split.
        pick = np.sort(np.random.RandomState(sup.seed).permutation(splits["train"])[:10_000])
        train_features = encode(net, dataset, pick, 512, torch.device("cpu"))
        prototypes = spherical_kmeans(train_features, sup.prototypes, sup.seed)
        quality = _held_out_quality(net, dataset, splits["holdout"][:2048], sup)
    meta = {
        "format": SELFSUP_FORMAT, "channels": dataset.channels,
        "resolution": dataset.resolution, "width": sup.width, "feature_dim": sup.feature_dim,
        "n_prototypes": len(prototypes), "first_stride": first_stride(dataset.resolution),
    }
    saved = build_extractor_net(meta)
    saved.body.load_state_dict(net.body.state_dict())
    saved.features.load_state_dict(net.features.state_dict())
    saved.head.prototypes.copy_(prototypes)
    occupancy = torch.bincount((F.normalize(train_features, dim=1) @ prototypes.t()).argmax(1),
                               minlength=len(prototypes))
    meta = {
        **meta, "data_md5": prepared_md5(dataset),
        "n_train": len(splits["train"]), "n_test": min(2048, len(splits["holdout"])),
        "device": dev.type,
        "cpu_code_paths": cpu_code_paths(), **quality,
        "prototype_occupancy_max": float(occupancy.max()) / len(train_features),
    }
    return save_extractor(saved, meta, out, report)


@torch.no_grad()
def _held_out_quality(net: DomainNet, dataset: PreparedDataset, indices: np.ndarray, sup
                      ) -> dict:
    """Held-out images: cosine of a view to its partner, and to other images (lower = spread);
    and the share of images whose partner is their nearest view (top-1 of a 256 batch)."""
    net.eval()
    views = torch.Generator().manual_seed(sup.seed + 1)
    pos, neg, hits, n = 0.0, 0.0, 0, 0
    for start in range(0, len(indices) - 255, 256):
        x = uint8_to_float(dataset.batch_uint8(indices[start:start + 256]))
        f1, f2 = (F.normalize(net.features(net.body(
            augment(x, views, sup.min_crop_area, sup.max_shift, sup.flip))), dim=1)
            for _ in range(2))
        sim = f1 @ f2.t()
        pos += float(sim.diag().sum())
        neg += float((sim.sum() - sim.diag().sum()) / 255)
        hits += int((sim.argmax(1) == torch.arange(256)).sum())
        n += 256
    if n == 0:
        return {"holdout_view_cosine": math.nan, "holdout_other_cosine": math.nan,
                "holdout_view_top1": math.nan}
    return {"holdout_view_cosine": pos / n, "holdout_other_cosine": neg / n,
            "holdout_view_top1": hits / n}
