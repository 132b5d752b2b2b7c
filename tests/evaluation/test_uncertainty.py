"""Every metric comes with its uncertainty (a bootstrap of the generated features), the floor
(held-out real images against the same reference) and, on request, a baseline generator."""

from __future__ import annotations

import logging

import numpy as np
from eval_helpers import LinearGenerator

from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import calculate
from ganpkg.evaluation.uncertainty import interval

GATEABLE = ("fid_domain", "kid_domain", "is_domain")


def test_metrics_carry_their_interval_the_floor_and_the_baseline(tiny, caplog):
    cfg = tiny.cfg.model_copy(update={"memorization": False, "bootstrap_resamples": 30})
    spec = resolve_extractor(cfg)
    with caplog.at_level(logging.INFO, "ganpkg.evaluation"):
        result = calculate(LinearGenerator(seed=1), tiny.dataset, cfg, spec, z_dim=16,
                           baseline=LinearGenerator(seed=2))
    # A line as each phase starts, and its time when it ends (a minute of silence otherwise).
    lines = [r.getMessage() for r in caplog.records if r.name == "ganpkg.evaluation"]
    phases = ["eval: reference features",
              "eval: features of 300 generated images and their metrics",
              "eval: standard errors", "eval: floor", "eval: baseline"]
    assert [x.split(" (")[0] for x in lines[::2]] == phases, lines
    assert [x.split(" done in ")[0] for x in lines[1::2]] == phases, lines
    m = result.metrics
    for name in GATEABLE:
        assert m[f"{name}_se"] > 0, name
        assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"], name
        assert (m[f"{name}_ci_low"], m[f"{name}_ci_high"]) == interval(m[name], m[f"{name}_se"],
                                                                       cfg.confidence)
        assert f"{name}_floor" in m and f"{name}_baseline" in m, name
    assert "is_std_domain_se" not in m and "kid_std_domain_floor" not in m  # spreads: no stats
    # Real held-out images sit far closer to the reference than a linear map of noise does.
    assert m["fid_domain_floor"] < m["fid_domain"] / 5
    assert m["is_domain_floor"] > m["is_domain"]
    assert result.protocol.floor == "holdout split, n=100"  # 600 images, 1/6 held out
    assert "30 resamples" in result.protocol.uncertainty


def test_the_standard_error_matches_the_spread_over_evaluation_seeds(tiny):
    """The bootstrap stands in for evaluating again with new samples: its se and the sd of the
    metric over evaluation seeds agree (within the noise of 8 seeds)."""
    cfg = tiny.cfg.model_copy(update={"memorization": False, "floor": False, "isc": False,
                                      "kid": False, "bootstrap_resamples": 40})
    spec = resolve_extractor(cfg)
    generator = LinearGenerator(seed=1)
    runs = [calculate(generator, tiny.dataset, cfg.model_copy(update={"seed": seed}), spec,
                      z_dim=16).metrics for seed in range(8)]
    spread = float(np.std([r["fid_domain"] for r in runs], ddof=1))
    se = float(np.median([r["fid_domain_se"] for r in runs]))
    assert 1 / 3 < spread / se < 3, (spread, se)


def test_is_alone_needs_no_fid_layer(tiny):
    """With FID and KID off only the logits are extracted; nothing asks for FID statistics."""
    cfg = tiny.cfg.model_copy(update={"memorization": False, "fid": False, "kid": False,
                                      "bootstrap_resamples": 5})
    result = calculate(LinearGenerator(seed=1), tiny.dataset, cfg, resolve_extractor(cfg),
                       z_dim=16)
    assert {"is_domain", "is_domain_se", "is_domain_floor"} <= set(result.metrics)
    assert "fid_domain" not in result.metrics
