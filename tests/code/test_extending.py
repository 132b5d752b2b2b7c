"""Extending ganpkg from outside the package: a new loss by name from params.yaml, a new metric
accepted by the config, the gate and the leaderboard — each one registration, no other edit."""

from __future__ import annotations

import pandas as pd
import pytest
import torch.nn.functional as F
import yaml

from ganpkg import metrics
from ganpkg.config import load_config
from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import protocol_tags
from ganpkg.losses import GANLoss
from ganpkg.registry import LOSSES
from ganpkg.training import train
from pipelines.gate import CHALLENGER, CHAMPION, decide
from pipelines.leaderboard import is_quality_metric, sort_table


class LeastSquares(GANLoss):
    """LSGAN (Mao et al. 2017), defined here, outside ganpkg."""

    def d_loss(self, real_logits, fake_logits):
        return 0.5 * (F.mse_loss(real_logits, real_logits.new_ones(real_logits.shape))
                      + F.mse_loss(fake_logits, fake_logits.new_zeros(fake_logits.shape)))

    def g_loss(self, fake_logits):
        return 0.5 * F.mse_loss(fake_logits, fake_logits.new_ones(fake_logits.shape))


@pytest.fixture
def lsgan():
    LOSSES.register("lsgan")(LeastSquares)
    yield "lsgan"
    LOSSES._entries.pop("lsgan")  # other tests see the built-ins only


def test_a_loss_registered_outside_trains_by_name_from_params_yaml(lsgan, tiny_overrides,
                                                                     tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"loss": "lsgan"}}))
    config = load_config(params, [*tiny_overrides, "train.total_steps=2"])
    assert config.train.loss == "lsgan"
    result = train(config)
    assert result.step == 2 and result.checkpoint.is_file()


def test_an_unregistered_loss_is_one_line_listing_the_registered_ones(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"loss": "lsgan"}}))
    with pytest.raises(UserError) as err:
        load_config(params)
    message = str(err.value)
    assert "train.loss" in message and "'lsgan' unknown" in message
    assert all(name in message for name in ("bce", "hinge", "wgan_gp")) and "\n" not in message


@pytest.fixture
def coverage():
    """A higher-is-better metric enabled by eval.prc, added by one registration."""
    metrics.METRICS.register("coverage")(metrics.Metric("coverage", None, False, "prc"))
    yield "coverage_domain"
    metrics.METRICS._entries.pop("coverage")


def test_a_new_metric_is_accepted_by_config_gate_and_leaderboard(coverage, tmp_path):
    with pytest.raises(UserError, match="eval.prc=true"):
        load_config(None, [f"registry.primary_metric={coverage}"]).check_gate_metric()
    config = load_config(None, [f"registry.primary_metric={coverage}", "eval.prc=true"])
    config.check_gate_metric()
    assert config.registry.lower_is_better is False

    base = protocol_tags({"extractor": "domain", "reference_md5": "r", "n_samples": 100,
                          "extractor_weights_sha256": "w"})
    base["metric.memorized_fraction_domain"] = "0.0"
    cfg = config.registry.model_copy(update={"margin": 0.0})
    better, worse = ({**base, f"metric.{coverage}": v} for v in ("0.8", "0.5"))
    assert decide(better, worse, "1", cfg).alias == CHAMPION
    assert decide(worse, better, "1", cfg).alias == CHALLENGER

    assert is_quality_metric(coverage) and is_quality_metric(f"{coverage}_se")
    table = pd.DataFrame({coverage: [0.5, 0.8], "start": [1, 2]})
    assert sort_table(table, coverage, None)[coverage].tolist() == [0.8, 0.5]
