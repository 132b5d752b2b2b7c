"""The divergence guard stops a run with a clear error and a FAILED status."""

import json
import math
from pathlib import Path

import pytest
import torch

from ganpkg.config import load_config
from ganpkg.training import DivergenceGuard, TrainingDiverged, train


def test_exploding_learning_rate_fails_the_run(tiny_overrides):
    config = load_config(None, tiny_overrides + ["train.lr_d=1e30", "train.lr_g=1e30"])
    with pytest.raises(TrainingDiverged, match="diverged at step"):
        train(config)
    status = json.loads((Path(config.train.run_dir) / "status.json").read_text())
    assert status["status"] == "FAILED" and "diverged" in status["message"]


def test_collapsed_discriminator_fails_the_run(tiny_overrides):
    # Every D loss is below a floor of 100, so after `patience` steps the guard must trip.
    config = load_config(None, tiny_overrides + ["train.collapse_d_loss=100",
                                                 "train.collapse_patience=4"])
    with pytest.raises(TrainingDiverged, match="discriminator collapsed"):
        train(config)


def test_guard_rules():
    config = load_config(None, ["train.collapse_patience=10", "train.collapse_d_loss=0.01"])
    guard = DivergenceGuard(config)
    guard.check(1, {"loss_d": 0.5, "loss_g": 1.0})
    with pytest.raises(TrainingDiverged, match="loss_g=nan"):
        guard.check(2, {"loss_d": 0.5, "loss_g": math.nan})
    with pytest.raises(TrainingDiverged, match="loss_d=inf"):
        guard.check(2, {"loss_d": math.inf, "loss_g": 1.0})
    guard.check(10, {"loss_d": 0.001, "loss_g": 1.0})
    guard.check(15, {"loss_d": 0.5, "loss_g": 1.0})  # recovered: the streak resets
    guard.check(20, {"loss_d": 0.001, "loss_g": 1.0})
    guard.check(29, {"loss_d": 0.001, "loss_g": 1.0})
    with pytest.raises(TrainingDiverged):
        guard.check(30, {"loss_d": 0.001, "loss_g": 1.0})
    critic = DivergenceGuard(load_config(None, ["train.loss=wgan_gp"]))
    for step in range(1000):  # a WGAN critic's loss is negative by design
        critic.check(step, {"loss_d": -5.0, "loss_g": 1.0})


def test_a_bad_step_between_log_steps_is_reported_at_its_own_step(tiny_config):
    """observe() runs every step on the device without a host sync; check() at the next log
    step reads it once and names the step where the losses first went bad."""

    guard = DivergenceGuard(tiny_config)
    for step, loss_g in ((1, 1.0), (2, 1.0), (3, math.nan), (4, 1.0)):
        guard.observe(step, {"loss_d": torch.tensor(0.5), "loss_g": torch.tensor(loss_g)})
    with pytest.raises(TrainingDiverged, match="diverged at step 3: losses back in range by step 4"):
        guard.check(4, {"loss_d": 0.5, "loss_g": 1.0})
    clean = DivergenceGuard(tiny_config)
    for step in range(1, 5):
        clean.observe(step, {"loss_d": torch.tensor(0.5), "loss_g": torch.tensor(1.0)})
    clean.check(4, {"loss_d": 0.5, "loss_g": 1.0})
