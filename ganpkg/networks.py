"""Generator and discriminator architectures, built by name from a registry.

DCGAN (Radford et al. 2015), as the seed describes it: the generator projects z to a 4×4 map
with a transposed convolution (equivalent to the seed's Dense(4·4·512) + reshape), then doubles
the resolution with stride-2 transposed convolutions, BatchNorm and ReLU, ending in tanh; the
discriminator mirrors it with stride-2 convolutions and LeakyReLU(0.2), no BatchNorm on its
first layer, ending in one logit per image. Weights start from N(0, 0.02).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganpkg.errors import UserError
from ganpkg.registry import ARCHITECTURES

if TYPE_CHECKING:
    from ganpkg.config import ModelConfig

RESOLUTIONS = (32, 64, 128)


def _n_upsamplings(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise UserError(f"resolution {resolution} is not supported; allowed: {RESOLUTIONS}")
    return int(math.log2(resolution // 4))


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class DCGANGenerator(nn.Module):
    """z (N, z_dim) → images (N, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, resolution: int, width: int, norm: str):
        super().__init__()
        self.z_dim, self.channels, self.resolution = z_dim, channels, resolution
        n_up = _n_upsamplings(resolution)
        ch = width * 2 ** (n_up - 1)  # channels at 4×4, halved at each doubling
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=norm != "batch"),
            _norm(norm, ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(n_up - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=norm != "batch"),
                _norm(norm, ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """images (N, C, H, W) → logits (N,)."""

    def __init__(self, channels: int, resolution: int, width: int, norm: str, sn: bool):
        super().__init__()
        n_down = _n_upsamplings(resolution)
        wrap: Callable[[nn.Module], nn.Module] = spectral_norm if sn else (lambda m: m)
        ch = width
        layers: list[nn.Module] = [
            wrap(nn.Conv2d(channels, ch, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(n_down - 1):
            layers += [
                wrap(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm != "batch")),
                _norm(norm, ch * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch *= 2
        layers += [wrap(nn.Conv2d(ch, 1, 4, 1, 0))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        # With spectral norm the raw weight lives in parametrizations.weight.original.
        weight = (
            module.parametrizations.weight.original
            if hasattr(module, "parametrizations")
            else module.weight
        )
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@ARCHITECTURES.register("dcgan")
def dcgan(model: ModelConfig, channels: int, resolution: int) -> tuple[nn.Module, nn.Module]:
    g = DCGANGenerator(model.z_dim, channels, resolution, model.g_width, model.g_norm)
    d = DCGANDiscriminator(channels, resolution, model.d_width, model.d_norm, model.spectral_norm)
    g.apply(init_dcgan_weights)
    d.apply(init_dcgan_weights)
    return g, d


def build_networks(model: ModelConfig, channels: int, resolution: int) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for ``model.arch``, initialised from the global torch RNG.

    An architecture is a function ``(ModelConfig, channels, resolution) → (G, D)`` registered
    in ``ARCHITECTURES``."""
    return ARCHITECTURES.get(model.arch)(model, channels, resolution)


def build_generator(model: ModelConfig, channels: int, resolution: int) -> nn.Module:
    """The generator alone (for loading weights into)."""
    return build_networks(model, channels, resolution)[0]
