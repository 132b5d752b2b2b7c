"""Each loss against its formula on fixed tensors."""

import math

import pytest
import torch
from torch import nn

from ganpkg.errors import UserError
from ganpkg.losses import LOSSES, build_loss, gradient_penalty

REAL = torch.tensor([2.0, -1.0, 0.5, 0.0])
FAKE = torch.tensor([-3.0, 1.5, 0.25, -0.5])


def sigmoid(t):
    return 1 / (1 + math.exp(-t))


def mean(values):
    return sum(values) / len(values)


def test_non_saturating_bce_matches_log_formula():
    loss = build_loss("bce")
    # max_D E[log D(x)] + E[log(1 - D(G(z)))]  →  minimise its negative.
    expected_d = -mean([math.log(sigmoid(r)) for r in REAL]) - mean(
        [math.log(1 - sigmoid(f)) for f in FAKE])
    expected_g = -mean([math.log(sigmoid(f)) for f in FAKE])
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_bce_matches_torch_bce_with_logits_and_is_stable_at_extremes():
    loss = build_loss("bce")
    bce = nn.BCEWithLogitsLoss()
    ref = bce(REAL, torch.ones(4)) + bce(FAKE, torch.zeros(4))
    assert torch.allclose(loss.d_loss(REAL, FAKE), ref)
    huge = torch.tensor([1e4, -1e4])
    assert torch.isfinite(loss.d_loss(huge, -huge)) and torch.isfinite(loss.g_loss(-huge))


def test_bce_discriminator_prefers_correct_answers():
    # The seed's signs would reward D for calling real data fake; ours must not.
    loss = build_loss("bce")
    right = loss.d_loss(torch.full((4,), 5.0), torch.full((4,), -5.0))
    wrong = loss.d_loss(torch.full((4,), -5.0), torch.full((4,), 5.0))
    assert right < 0.05 and wrong > 5


def test_hinge_matches_formula():
    loss = build_loss("hinge")
    expected_d = mean([max(0, 1 - r) for r in REAL]) + mean([max(0, 1 + f) for f in FAKE])
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(expected_d)
    assert loss.g_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_wasserstein_matches_formula():
    loss = build_loss("wgan_gp")
    assert loss.needs_gradient_penalty
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(mean(FAKE.tolist()) - mean(REAL.tolist()))
    assert loss.g_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared():
    # D(x) = <w, x>: ∇D = w everywhere, so the penalty is (‖w‖ - 1)² whatever the inputs.
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.arange(12.0).view(1, 12) / 10)
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    gp = gradient_penalty(critic, real, fake, torch.rand(5))
    expected = (critic[1].weight.norm().item() - 1) ** 2
    assert gp.item() == pytest.approx(expected, rel=1e-5)
    gp.backward()  # differentiable w.r.t. the critic (create_graph=True)
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_registry_lists_valid_names():
    assert set(LOSSES) == {"bce", "hinge", "wgan_gp"}
    with pytest.raises(UserError, match="allowed.*bce.*hinge.*wgan_gp"):
        build_loss("lsgan")
