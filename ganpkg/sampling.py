"""Drawing images from a generator: grids, image folders and latent interpolations."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid

from ganpkg.data.prepared import float_to_uint8
from ganpkg.files import write_atomic


def fixed_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The same z for every sample grid of a run, so grids show progress, not new draws."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed + 7919))


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] for each row of z, on CPU, in batches; G's train/eval mode restored."""
    was_training = g.training
    g.eval()
    device = next(g.parameters()).device
    try:
        out = [g(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    finally:
        g.train(was_training)
    return torch.cat(out)


def _write_png(image: torch.Tensor, path: Path) -> Path:
    """uint8 C×H×W → PNG, written atomically (no half-written images)."""
    array = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    return write_atomic(path, lambda handle: pil.save(handle, format="PNG"))


def images_to_grid(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """float [-1, 1] N×C×H×W → one uint8 C×H×W grid, about square."""
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=-1.0)
    if images.shape[1] == 1:
        grid = grid[:1]  # make_grid repeats grayscale to 3 channels
    return float_to_uint8(grid)


def save_grid(g: nn.Module, z: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Generate one image per z and save them as one PNG grid."""
    return _write_png(images_to_grid(generate(g, z), nrow), Path(path))


def save_images(images: torch.Tensor, folder: str | Path, prefix: str = "sample",
                first_index: int = 0) -> list[Path]:
    """Each image of a float [-1, 1] batch as its own PNG in ``folder``, numbered from
    ``first_index``."""
    folder = Path(folder)
    as_uint8 = float_to_uint8(images)
    return [_write_png(img, folder / f"{prefix}-{first_index + i:06d}.png")
            for i, img in enumerate(as_uint8)]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep their norm along the path."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    lerp = (1 - t) * a + t * b
    out = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(so.abs() < 1e-6, lerp, out)


def interpolation_latents(rows: int, steps: int, z_dim: int, seed: int) -> torch.Tensor:
    """rows × steps latents: each row walks from one random z to another."""
    gen = torch.Generator().manual_seed(seed)
    ends = torch.randn(rows, 2, z_dim, generator=gen)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    return slerp(ends[:, :1], ends[:, 1:], t).reshape(rows * steps, z_dim)
