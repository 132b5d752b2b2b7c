"""One GAN update (n_critic discriminator steps, then one generator step) and the EMA.

Kept apart from the loop so the benchmark times exactly what training runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ganpkg.losses import GANLoss, gradient_penalty


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    while True:
        if hasattr(module, "module"):  # DistributedDataParallel
            module = module.module
        elif hasattr(module, "_orig_mod"):  # torch.compile
            module = module._orig_mod
        else:
            return module


@dataclass
class GANStep:
    """Owns the networks and optimizers; ``__call__`` performs one generator iteration."""

    g: nn.Module
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: GANLoss
    gp_weight: float = 10.0
    autocast_dtype: torch.dtype | None = None  # bf16 on CUDA
    d_for_g: nn.Module | None = None  # D as used in the G step (DDP: the unwrapped module)
    r1_gamma: float = 0.0  # R1 penalty weight (0 = off)
    r1_every: int = 16  # lazy regularization: the penalty every this many steps, scaled by it

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def __call__(
        self, reals: list[torch.Tensor], zs: list[torch.Tensor], alphas: list[torch.Tensor],
        step: int,
    ) -> dict[str, torch.Tensor]:
        """reals/zs/alphas: one entry per critic step; ``step``: the generator steps done so
        far (when the lazy R1 step is due). Returns losses as detached tensors.

        The generator step reuses the last critic step's fakes (as pytorch/examples' DCGAN
        does) and freezes D's parameters, so its backward skips D's weight gradients, which
        would be computed only to be thrown away.
        """
        device = reals[0].device
        n = len(reals)
        for i, (real, z, alpha) in enumerate(zip(reals, zs, alphas)):
            with self._autocast(device):
                if i == n - 1:
                    fake = self.g(z)
                else:
                    with torch.no_grad():
                        fake = self.g(z)
                fake_d = fake.detach()
                real_logits = self.d(real).float()
                fake_logits = self.d(fake_d).float()
                d_loss = self.loss.d_loss(real_logits, fake_logits)
                if self.loss.needs_gradient_penalty and self.gp_weight > 0:
                    d_loss = d_loss + self.gp_weight * gradient_penalty(
                        self.d, real, fake_d, alpha
                    )
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        if self.r1_gamma > 0 and step % self.r1_every == 0:
            self._r1_step(reals[-1])

        d_for_g = self.d_for_g if self.d_for_g is not None else self.d
        d_for_g.requires_grad_(False)
        try:
            with self._autocast(device):
                g_loss = self.loss.g_loss(d_for_g(fake).float())
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        finally:
            d_for_g.requires_grad_(True)
        return {
            "loss_d": d_loss.detach(),
            "loss_g": g_loss.detach(),
            "d_real": real_logits.detach().mean(),
            "d_fake": fake_logits.detach().mean(),
        }

    def _r1_step(self, real: torch.Tensor) -> None:
        """R1 (Mescheder et al. 2018): γ/2·E‖∇ₓD(x)‖² on real images, as its own D step every
        r1_every steps with its weight scaled by r1_every (StyleGAN2's lazy regularization:
        the same average penalty at a sixteenth of the double-backward cost)."""
        real = real.detach().requires_grad_(True)
        with self._autocast(real.device):
            logits = self.d(real).float()
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grad.float().square().flatten(1).sum(1).mean()
        self.opt_d.zero_grad(set_to_none=True)
        (penalty * (self.r1_gamma / 2 * self.r1_every)).backward()
        self.opt_d.step()


def ema_decay_at(step: int, decay: float, start_step: int) -> float:
    """EMA decay with a warm-up: early on the average follows G closely (StyleGAN's ramp)."""
    if step < start_step:
        return 0.0
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1-decay)·model for parameters; buffers (BN statistics) copied."""
    ema_params = list(ema.parameters())
    model_params = [p.detach() for p in unwrap(model).parameters()]
    torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), unwrap(model).buffers()):
        b_ema.copy_(b)


def grad_norm(module: nn.Module) -> float:
    """Global L2 norm of the gradients currently held by ``module``'s parameters."""
    grads = [p.grad.detach().float() for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
