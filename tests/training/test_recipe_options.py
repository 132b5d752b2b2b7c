"""The recipe's optimisation options: the linear learning-rate schedule and lazy R1."""

import pytest
import torch
from torch import nn

from ganpkg.checkpoint import latest_checkpoint, load_checkpoint
from ganpkg.config import load_config
from ganpkg.errors import UserError
from ganpkg.losses import build_loss
from ganpkg.step import GANStep
from ganpkg.training import learning_rate_factor, train

RECIPE = ["train.lr_schedule=linear", "train.r1_gamma=0.5", "train.r1_every=3"]


def test_linear_schedule_falls_to_zero_at_the_budget():
    assert learning_rate_factor("linear", 0, 1500) == 1.0
    assert learning_rate_factor("linear", 750, 1500) == 0.5
    assert learning_rate_factor("linear", 1499, 1500) == pytest.approx(1 / 1500)
    assert learning_rate_factor("constant", 1499, 1500) == 1.0


def test_the_last_update_of_a_linear_run_uses_the_smallest_rate(tiny_overrides):
    result = train(load_config(None, tiny_overrides + RECIPE))
    state = load_checkpoint(result.checkpoint)
    lr = state["config"]["train"]["lr_g"]
    # 12 steps: the update that made step 12 ran at lr·(1 - 11/12)
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(lr / 12)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(state["config"]["train"]
                                                                     ["lr_d"] / 12)


def test_resume_with_schedule_and_r1_is_bit_identical(tiny_overrides):
    cfg = load_config(None, tiny_overrides + RECIPE + ["train.keep_checkpoints=5"])
    first = load_checkpoint(train(cfg).checkpoint)
    ckpts = cfg.train.run_dir + "/checkpoints"
    latest_checkpoint(ckpts).unlink()  # back to step 8: steps 9–12 run again, R1 at step 9
    assert load_checkpoint(latest_checkpoint(ckpts))["step"] == 8
    again = load_checkpoint(train(cfg).checkpoint)
    for key in ("g", "d", "g_ema"):
        for name, tensor in first[key].items():
            assert torch.equal(tensor, again[key][name]), f"{key}.{name} differs"


def test_a_linear_schedule_keeps_its_step_budget_on_resume(tiny_overrides):
    train(load_config(None, tiny_overrides + ["train.lr_schedule=linear"]))
    with pytest.raises(UserError, match="train.total_steps"):
        train(load_config(None, tiny_overrides + ["train.lr_schedule=linear",
                                                  "train.total_steps=16"]))


class LinearCritic(nn.Module):
    """D(x) = w·x: ∇ₓD = w, so R1 = ‖w‖² and its gradient in w is 2w."""

    def __init__(self, size: int):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, size))

    def forward(self, x):
        return x.flatten(1) @ self.w


def _step(r1_gamma: float, r1_every: int):
    g = nn.Sequential(nn.Linear(2, 4), nn.Unflatten(1, (1, 2, 2)))
    d = LinearCritic(4)
    opt_d = torch.optim.SGD(d.parameters(), lr=1.0)
    return GANStep(g, d, torch.optim.SGD(g.parameters(), lr=0.0), opt_d, build_loss("hinge"),
                   r1_gamma=r1_gamma, r1_every=r1_every), d


def test_r1_step_is_gamma_over_two_times_every_times_the_gradient_norm():
    step, d = _step(r1_gamma=0.1, r1_every=4)
    w = d.w.detach().clone()
    step._r1_step(torch.randn(3, 1, 2, 2))
    # SGD lr 1 on (γ/2·every)·‖w‖²: w ← w - γ·every·w
    assert torch.allclose(d.w.detach(), w - 0.1 * 4 * w)


def test_r1_runs_every_r1_every_steps_only():
    step, _ = _step(r1_gamma=0.1, r1_every=4)
    calls = []
    step._r1_step = lambda real: calls.append(1)
    inputs = ([torch.randn(3, 1, 2, 2)], [torch.randn(3, 2)], [torch.rand(3)])
    for s in range(8):
        step(*inputs, step=s)
    assert len(calls) == 2  # steps 0 and 4
    off, _ = _step(r1_gamma=0.0, r1_every=4)
    off._r1_step = lambda real: pytest.fail("R1 ran with r1_gamma=0")
    off(*inputs, step=0)
