"""Reference statistics are cached by content (data md5, split, n, weights sha256), not by name."""

from __future__ import annotations

import numpy as np
import torch_fidelity.utils
from eval_helpers import make_shapes

from ganpkg.data.prepared import open_prepared, write_prepared
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.reference_stats import (
    prepared_md5,
    reference_cache_name,
    reference_indices,
    reference_statistics,
)


def test_every_input_of_the_reference_changes_its_cache_name():
    base = {"data_md5": "a" * 32, "split": "all", "n": 100, "weights_sha256": "b" * 64,
            "holdout_fraction": 0.1}
    name = reference_cache_name(**base)
    for key, value in (("data_md5", "c" * 32), ("split", "train"), ("n", 99),
                       ("weights_sha256", "d" * 64)):
        assert reference_cache_name(**{**base, key: value}) != name, key
    train = {**base, "split": "train"}
    assert reference_cache_name(**train) != reference_cache_name(**{**train,
                                                                   "holdout_fraction": 0.2})


def test_statistics_are_reused_for_the_same_data_and_recomputed_when_it_changes(
        tiny, tmp_path, monkeypatch):
    cfg = tiny.cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    spec = resolve_extractor(cfg)
    images, labels = make_shapes(200, seed=1)
    root = write_prepared(tmp_path / "prepared", images, labels, {})
    first = reference_statistics(open_prepared(root), cfg, spec)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(prepared_md5(open_prepared(root))[:16] in f for f in files)
    assert all(spec.weights_sha256[:16] in f for f in files)

    calls = []
    real_extract = torch_fidelity.utils.get_featuresdict_from_dataset
    monkeypatch.setattr(torch_fidelity.utils, "get_featuresdict_from_dataset",
                        lambda *a, **k: calls.append(1) or real_extract(*a, **k))
    again = reference_statistics(open_prepared(root), cfg, spec)
    assert calls == [] and np.array_equal(first["mu"], again["mu"])

    # Same folder, same count, other images: a name-only cache would serve stale statistics.
    images_b, labels_b = make_shapes(200, seed=2)
    write_prepared(root, images_b, labels_b, {})
    changed = reference_statistics(open_prepared(root), cfg, spec)
    assert calls, "changed data must be extracted again"
    assert not np.allclose(first["mu"], changed["mu"])


def test_reference_split_and_cap_are_fixed_and_disjoint(tiny):
    n = len(tiny.dataset)
    train = reference_indices(n, tiny.cfg.model_copy(update={"reference_split": "train"}))
    holdout = reference_indices(n, tiny.cfg.model_copy(update={"reference_split": "holdout"}))
    assert len(np.intersect1d(train, holdout)) == 0 and len(train) + len(holdout) == n
    capped = tiny.cfg.model_copy(update={"reference_max_images": 50})
    assert np.array_equal(reference_indices(n, capped), reference_indices(n, capped))
    assert len(reference_indices(n, capped)) == 50
    assert not np.array_equal(reference_indices(n, capped), np.arange(50))  # a spread pick


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_poisoned_cache_file_is_never_unpickled_and_is_recomputed(tiny, tmp_path):
    from ganpkg.evaluation.reference_stats import fid_layer, reference_features, reference_input

    cfg = tiny.cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    spec = resolve_extractor(cfg)
    layer = fid_layer(spec)
    name = reference_input(tiny.dataset, cfg, spec)[1]
    planted = tmp_path / "cache" / f"{name}-{spec.fidelity_name}-{layer}.npy"
    planted.parent.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    np.save(planted, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    features = reference_features(tiny.dataset, cfg, spec, layers=[layer])[layer]
    assert not marker.exists(), "the cache was unpickled"
    assert features.dtype.is_floating_point and features.shape[0] > 1
    assert np.load(planted, allow_pickle=False).shape == tuple(features.shape)  # rewritten
