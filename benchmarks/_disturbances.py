"""Heusel et al. 2017's disturbances of real images (their Fig. 1 and appendix), for the yardstick
benchmark: each takes float images in [0, 1] (N×C×H×W), a level and a torch.Generator, and
returns disturbed images in [0, 1]; level 0 returns the images unchanged.

Sizes are relative to the image side (blur's sigma is given in pixels at 64 px and scaled), so
the grid means the same thing at 32 and 64 px.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LEVELS = {
    "gaussian noise": (0.0, 0.25, 0.5, 0.75),  # mixing weight of a noise image
    "gaussian blur": (0.0, 1.0, 2.0, 4.0),  # sigma in pixels at 64 px
    "black rectangles": (0.0, 0.25, 0.5, 0.75),  # each of 5 squares' side, fraction of the side
    "swirl": (0.0, 1.0, 2.0, 4.0),  # swirl strength
    "salt and pepper": (0.0, 0.1, 0.2, 0.3),  # fraction of pixels set to 0 or 1
    "contamination": (0.0, 0.25, 0.5, 0.75),  # fraction of images from another dataset
}


def gaussian_noise(x: torch.Tensor, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """(1 − α)·x + α·noise, the noise an N(0.5, 0.25²) image clipped to [0, 1]."""
    noise = (0.5 + 0.25 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return (1 - alpha) * x + alpha * noise


def gaussian_blur(x: torch.Tensor, sigma_at_64: float, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, sigma scaled to the side (given in pixels at 64 px)."""
    if sigma_at_64 == 0:
        return x
    sigma = sigma_at_64 * x.shape[-1] / 64
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def black_rectangles(x: torch.Tensor, side: float, gen: torch.Generator) -> torch.Tensor:
    """Five black squares of `side` × the image side, at random places."""
    if side == 0:
        return x
    y = x.clone()
    res = x.shape[-1]
    k = max(1, round(side * res))
    corners = torch.randint(0, res - k + 1, (x.shape[0], 5, 2), generator=gen)
    for i in range(x.shape[0]):
        for r, c in corners[i].tolist():
            y[i, :, r:r + k, c:c + k] = 0
    return y


def swirl(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """skimage.transform.swirl about the centre with its default radius (100 px, taken at 64 px
    and scaled): a pixel at distance ρ is taken from angle strength·exp(−ρ / (radius/5 · ln 2))
    further round, so the twist fades to 1/1000 at the radius."""
    if strength == 0:
        return x
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    rho = torch.sqrt(xs ** 2 + ys ** 2)
    radius = 100 / 64 * 2  # in these coordinates (the side spans −1..1)
    theta = strength * torch.exp(-rho / (radius / 5 * math.log(2))) + torch.atan2(ys, xs)
    grid = torch.stack([rho * torch.cos(theta), rho * torch.sin(theta)], dim=-1)
    return F.grid_sample(x, grid.expand(n, h, w, 2), mode="bilinear", padding_mode="border",
                         align_corners=True)


def salt_and_pepper(x: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A `fraction` of the pixels (all channels) set to black or white, half each."""
    if fraction == 0:
        return x
    u = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=gen).expand_as(x)
    y = torch.where(u < fraction / 2, torch.zeros_like(x), x)
    return torch.where((u >= fraction / 2) & (u < fraction), torch.ones_like(x), y)


def contamination(x: torch.Tensor, fraction: float, gen: torch.Generator,
                  other: torch.Tensor | None = None) -> torch.Tensor:
    """A `fraction` of the images replaced by images of another dataset (`other`, same shape)."""
    if fraction == 0:
        return x
    assert other is not None and other.shape[1:] == x.shape[1:], "contamination needs `other`"
    y = x.clone()
    k = round(fraction * len(x))
    where = torch.randperm(len(x), generator=gen)[:k]
    pick = torch.randint(0, len(other), (k,), generator=gen)
    y[where] = other[pick]
    return y


DISTURB = {
    "gaussian noise": gaussian_noise, "gaussian blur": gaussian_blur,
    "black rectangles": black_rectangles, "swirl": swirl, "salt and pepper": salt_and_pepper,
    "contamination": contamination,
}


def disturb(x: torch.Tensor, kind: str, level: float, seed: int,
            other: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one disturbance at one level, drawing from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "contamination":
        return contamination(x, level, gen, other)
    return DISTURB[kind](x, level, gen)
