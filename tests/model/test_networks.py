"""Architecture contract: z (N, z_dim) → (N, C, H, W) in [-1, 1]; D → one logit per image."""

import pytest
import torch
from torch import nn

from ganpkg.config import ModelConfig
from ganpkg.networks import build_networks


@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(resolution, channels):
    torch.manual_seed(0)
    model = ModelConfig(z_dim=10, g_width=4, d_width=4)
    g, d = build_networks(model, channels, resolution)
    images = g(torch.randn(3, 10))
    assert images.shape == (3, channels, resolution, resolution)
    assert images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)


def test_seed_architecture_64x64x3():
    g, d = build_networks(ModelConfig(g_width=64, d_width=64), 3, 64)  # the seed's widths
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs[0].in_channels == 100 and convs[0].out_channels == 512  # 4×4×512, as the seed
    assert [m.out_channels for m in convs] == [512, 256, 128, 64, 3]
    assert isinstance(list(g.modules())[-1], nn.Tanh)
    d_layers = list(d.net)
    assert isinstance(d_layers[1], nn.LeakyReLU) and d_layers[1].negative_slope == 0.2
    assert not isinstance(d_layers[1], nn.BatchNorm2d)  # no BN on D's first layer


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    g, _ = build_networks(ModelConfig(g_width=64), 3, 64)
    weights = torch.cat([m.weight.flatten() for m in g.modules()
                         if isinstance(m, nn.ConvTranspose2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.bias == 0) for m in bn)


def test_spectral_norm_bounds_each_layer():
    torch.manual_seed(0)
    _, d = build_networks(ModelConfig(spectral_norm=True, d_norm="none"), 1, 32)
    d.train()
    x = torch.randn(4, 1, 32, 32)
    for _ in range(20):  # power iterations converge during forward passes
        d(x)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(hasattr(m, "parametrizations") for m in convs)
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, rel=0.05)


def test_norm_none_has_no_batchnorm():
    g, d = build_networks(ModelConfig(g_norm="none", d_norm="none"), 1, 32)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*g.modules(), *d.modules()])
