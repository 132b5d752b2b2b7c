"""FID behaves: real vs real ≈ 0, far below noise and an untrained generator; seeds reproduce."""

from __future__ import annotations

import numpy as np
import torch
from eval_helpers import LinearGenerator

from ganpkg.config import ModelConfig
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import calculate, evaluate_generator
from ganpkg.evaluation.reference_stats import UInt8Images, split_indices
from ganpkg.metrics import parse
from ganpkg.networks import build_generator


def test_fid_of_a_real_split_is_near_zero_and_far_below_noise_and_untrained(tiny):
    cfg = tiny.cfg.model_copy(update={"reference_split": "train", "holdout_fraction": 0.3,
                                      "isc": False})
    spec = resolve_extractor(cfg)
    ds = tiny.dataset
    holdout = split_indices(len(ds), cfg.holdout_fraction)["holdout"]
    real = calculate(UInt8Images(ds.images, holdout), ds, cfg, spec)
    noise_images = np.random.RandomState(1).randint(0, 256, (len(holdout), 1, 32, 32), np.uint8)
    noise = calculate(UInt8Images(noise_images), ds, cfg, spec)
    torch.manual_seed(0)
    g = build_generator(ModelConfig(z_dim=16, g_width=8), channels=1, resolution=32)
    untrained = calculate(g, ds, cfg, spec, z_dim=16)

    fid_real, fid_noise = real.metrics["fid_domain"], noise.metrics["fid_domain"]
    fid_untrained = untrained.metrics["fid_domain"]
    assert fid_real < 0.05 * fid_noise and fid_real < 0.05 * fid_untrained, \
        (fid_real, fid_noise, fid_untrained)
    assert real.metrics["kid_domain"] < 0.05 * min(noise.metrics["kid_domain"],
                                                   untrained.metrics["kid_domain"])
    assert real.protocol.n_samples == len(holdout)
    assert real.protocol.reference_n == len(ds) - len(holdout)


def test_same_seed_gives_identical_results_and_another_seed_does_not(tiny, tmp_path):
    ds, cfg = tiny.dataset, tiny.cfg
    g = LinearGenerator()
    first = evaluate_generator(g, 16, ds, cfg, out_dir=tmp_path / "a")
    second = evaluate_generator(g, 16, ds, cfg, out_dir=tmp_path / "b")
    assert first.metrics == second.metrics
    assert first.protocol == second.protocol
    assert first.memorization.closest_distances == second.memorization.closest_distances
    assert (tmp_path / "a" / "eval.json").is_file()
    other = evaluate_generator(g, 16, ds, cfg.model_copy(update={"seed": 1}))
    assert other.metrics["fid_domain"] != first.metrics["fid_domain"]
    assert other.protocol.differences(first.protocol.__class__(
        **{**first.protocol.as_dict(), "n_samples": 10})) == ["n_samples"]
    assert other.protocol.differences(first.protocol) == []  # seed differs, measurement does not
    assert type(first.protocol).from_tags(first.protocol.to_tags()) == first.protocol


def test_metric_names_carry_the_extractor_and_switches_are_honoured(tiny):
    cfg = tiny.cfg.model_copy(update={"isc": False, "kid": False, "prc": True,
                                      "memorization": False})
    result = evaluate_generator(LinearGenerator(), 16, tiny.dataset, cfg)
    values = {k for k in result.metrics if parse(k).qualifier is None}  # without _se, _floor...
    assert values == {"fid_domain", "precision_domain", "recall_domain", "f_score_domain"}
