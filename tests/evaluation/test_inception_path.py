"""torch-fidelity's real Inception extractor, loaded from a local path (random weights here)."""

from __future__ import annotations

import math
import urllib.request

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from eval_helpers import LinearGenerator

from ganpkg.config import Config
from ganpkg.evaluation.extractors import check_eval_ready
from ganpkg.evaluation.fidelity import evaluate_generator
from ganpkg.files import hash_file


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A file shaped like torch-fidelity's Inception weights, randomly initialised."""
    cls = tf_inception.FeatureExtractorInceptionV3
    original = cls.load_state_dict
    cls.load_state_dict = lambda self, state_dict: None  # build it without any weights
    try:
        tf_inception.load_state_dict_from_url, real = (lambda *a, **k: None,
                                                      tf_inception.load_state_dict_from_url)
        torch.manual_seed(0)
        model = cls("inception-v3-compat", ["2048"])
    finally:
        cls.load_state_dict = original
        tf_inception.load_state_dict_from_url = real
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_inception_from_a_local_path_never_downloads(tiny, random_inception, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(urllib.request, "urlopen", pytest.fail)
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", pytest.fail)
    eval_cfg = tiny.cfg.model_copy(update={
        "extractor": "inception-v3-compat", "inception_weights": str(random_inception),
        "inception_weights_sha256": hash_file(random_inception), "n_samples": 8,
        "batch_size": 8, "reference_max_images": 8, "isc_splits": 2, "kid_subsets": 4,
        "memorization": False, "floor": False, "bootstrap_resamples": 0,  # 299² is slow on CPU
    })
    spec = check_eval_ready(Config(eval=eval_cfg))
    result = evaluate_generator(LinearGenerator(), 16, tiny.dataset, eval_cfg, spec=spec)
    assert set(result.metrics) == {"fid_inception", "is_inception", "is_std_inception",
                                   "kid_inception", "kid_std_inception"}
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert result.protocol.resize == "tf1-bilinear 32->299"
    assert result.protocol.extractor_weights_sha256 == spec.weights_sha256
