"""GAN objectives, selected by name from a registry.

All work on discriminator logits. The seed writes the discriminator's objective with its signs
reversed (it would *minimise* log D(x) on real data); the correct min-max game is
max_D E[log D(x)] + E[log(1 - D(G(z)))], and the generator here uses the non-saturating form
max_G E[log D(G(z))] (Goodfellow et al. 2014, §3), which gives useful gradients early on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganpkg.registry import LOSSES


class GANLoss:
    """Discriminator and generator losses on logits, and what the trainer must know of them.

    ``needs_gradient_penalty``: the trainer adds ``gp_weight`` × the gradient penalty to the D
    loss (a double backward, which DDP does not support). ``has_floor``: the D loss is bounded
    below near 0 when D wins outright, so a D loss stuck there means collapse (a critic's
    Wasserstein loss has no such floor).
    """

    needs_gradient_penalty = False
    has_floor = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@LOSSES.register("bce")
class NonSaturatingBCE(GANLoss):
    """-log σ(D(x)) - log(1 - σ(D(G(z)))) for D; -log σ(D(G(z))) for G (softplus form, stable)."""

    def d_loss(self, real_logits, fake_logits):
        # -log σ(t) = softplus(-t) and -log(1 - σ(t)) = softplus(t), without overflow.
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()


@LOSSES.register("hinge")
class Hinge(GANLoss):
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))) for D; -D(G(z)) for G (Lim & Ye 2017)."""

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


@LOSSES.register("wgan_gp")
class WassersteinGP(GANLoss):
    """Critic: D(G(z)) - D(x) (+ gradient penalty, added by the trainer); G: -D(G(z)).

    Gulrajani et al. 2017: the gradient-penalty form of Arjovsky et al.'s Wasserstein GAN.
    """

    needs_gradient_penalty = True
    has_floor = False

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """E[(‖∇ D(x̂)‖₂ - 1)²] at x̂ = α·real + (1-α)·fake, α per sample in [0, 1]."""
    alpha = alpha.view(-1, 1, 1, 1).to(real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def build_loss(name: str) -> GANLoss:
    """The loss registered under ``name``; unknown names list the valid ones."""
    return LOSSES.get(name)()
