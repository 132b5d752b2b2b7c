"""In-memory evaluation == torch-fidelity's own `fidelity` CLI on the same samples as PNG files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_helpers import LinearGenerator
from PIL import Image

from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import calculate
from ganpkg.evaluation.fidelity_cli import cli_args, run_fidelity_cli
from ganpkg.evaluation.reference_stats import reference_indices
from ganpkg.sampling import save_images


def test_fid_kid_is_match_the_fidelity_cli_on_png_exports(tiny, tmp_path):
    ds, cfg = tiny.dataset, tiny.cfg.model_copy(update={"reference_max_images": 400})
    spec = resolve_extractor(cfg)
    g = LinearGenerator().eval()
    ours = calculate(g, ds, cfg, spec, z_dim=16)

    # The same z torch-fidelity draws (numpy RandomState(seed), in order), saved as PNG.
    z = torch.from_numpy(np.random.RandomState(cfg.seed).randn(cfg.n_samples, 16)).float()
    with torch.no_grad():
        save_images(g(z), tmp_path / "fakes")
    (tmp_path / "reals").mkdir()
    for j, i in enumerate(reference_indices(len(ds), cfg)):  # KID subsets follow file order
        Image.fromarray(ds.images[i, 0]).save(tmp_path / "reals" / f"real-{j:06d}.png")

    theirs = run_fidelity_cli(cli_args(tmp_path / "fakes", tmp_path / "reals", cfg, spec,
                                       ours.protocol.kid_subset_size))
    for key in ("frechet_inception_distance", "kernel_inception_distance_mean",
                "inception_score_mean"):
        assert ours.raw[key] == pytest.approx(theirs[key], rel=1e-3), key
    assert ours.metrics["fid_domain"] == ours.raw["frechet_inception_distance"]
