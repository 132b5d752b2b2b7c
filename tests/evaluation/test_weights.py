"""Extractor weights: fail fast with the fix when missing, refuse a wrong sha256."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import make_shapes

from ganpkg.config import Config, EvalConfig
from ganpkg.data.prepared import open_prepared, write_prepared
from ganpkg.errors import UserError
from ganpkg.evaluation import extractors as weights
from ganpkg.evaluation.extractors import check_eval_ready, inception_hub_path, resolve_extractor
from ganpkg.evaluation.fidelity import calculate
from ganpkg.evaluation.reference_stats import UInt8Images
from ganpkg.files import hash_file


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network (whatever this machine has)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_missing_inception_weights_fail_fast_with_one_line_saying_how(offline):
    config = Config(eval=EvalConfig(extractor="inception-v3-compat"))
    with pytest.raises(UserError) as err:
        check_eval_ready(config)
    message = str(err.value)
    assert "\n" not in message
    assert "eval.inception_weights=" in message and "eval.extractor=domain" in message
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert offline, "a download must have been tried first"
    with pytest.raises(UserError, match="downloads are off"):
        check_eval_ready(config, download=False)


def test_a_configured_path_that_does_not_exist_is_named(offline, tmp_path):
    config = Config(eval=EvalConfig(extractor="inception-v3-compat", inception_weights=str(tmp_path / "nope.pth")))
    with pytest.raises(UserError, match="eval.inception_weights: .*nope.pth not found"):
        check_eval_ready(config)


def test_sha256_mismatch_is_refused_for_a_local_path_and_for_the_hub_cache(offline, tmp_path):
    bogus = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    bogus.write_bytes(b"not the inception weights")
    with pytest.raises(UserError, match="sha256 .* expected 6726825d"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat", inception_weights=str(bogus))))
    cached = inception_hub_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a truncated download")
    with pytest.raises(UserError, match="sha256"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat")))


def test_matching_sha256_passes_and_a_download_lands_in_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    payload = b"pretend these are the weights"
    pinned = sha256_file_bytes(payload)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    # The download lands whole in the hub cache; its sha matches the pin, but a pinned file
    # other than the known one must also be plain Inception weights, and these bytes are not.
    with pytest.raises(UserError, match="not a plain weights file"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat",
                                                inception_weights_sha256=pinned)))
    assert inception_hub_path().read_bytes() == payload
    local = tmp_path / "local.pth"
    local.write_bytes(payload)
    with pytest.raises(UserError, match="local.pth is not a plain weights file"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat", inception_weights=str(local),
                                                inception_weights_sha256=pinned[:12])))


def test_the_default_check_is_the_full_sha256_not_the_urls_prefix(offline, tmp_path, monkeypatch):
    """A file whose sha256 shares the URL's 8 hex digits (32 bits: forgeable) is refused."""
    forged = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    forged.write_bytes(b"padded to match the prefix")
    monkeypatch.setattr(weights, "hash_file", lambda path, algorithm="sha256": "6726825d" + "0" * 56)
    with pytest.raises(UserError, match="expected 6726825d0af5f729"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat",
                                                inception_weights=str(forged))))


class _Payload:
    """Unpickling this writes a marker file: code that ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_pinned_weights_that_need_unpickling_or_are_not_inception_are_refused(offline, tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, evil)
    with pytest.raises(UserError, match="evil.pth is not a plain weights file"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat",
                                                inception_weights=str(evil),
                                                inception_weights_sha256=hash_file(evil))))
    assert not marker.exists()
    wrong = tmp_path / "wrong.pth"  # plain tensors, self-consistent sha, not Inception
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(UserError, match="is not torch-fidelity's Inception-v3 weights"):
        check_eval_ready(Config(eval=EvalConfig(extractor="inception-v3-compat",
                                                inception_weights=str(wrong),
                                                inception_weights_sha256=hash_file(wrong))))


def sha256_file_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_domain_weights_missing_invalid_or_from_other_data(tiny, tmp_path):
    cfg = tiny.cfg.model_copy(update={"domain": tiny.cfg.domain.model_copy(
        update={"weights": str(tmp_path / "missing.pt")})})
    config = Config(eval=cfg)
    assert check_eval_ready(config) is None  # the train_extractor stage will make it
    with pytest.raises(UserError, match="dvc repro train_extractor"):
        check_eval_ready(config, need_domain_weights=True)
    (tmp_path / "missing.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not readable"):
        check_eval_ready(config)

    images, labels = make_shapes(100, seed=5)
    other = open_prepared(write_prepared(tmp_path / "other", images, labels, {}))
    spec = resolve_extractor(tiny.cfg)
    with pytest.raises(UserError, match="trained on other data"):
        calculate(UInt8Images(np.array(images)), other, tiny.cfg, spec)


def test_expected_inception_digest_comes_from_torch_fidelitys_url():
    assert weights.expected_inception_sha256(EvalConfig()) == weights.KNOWN_INCEPTION_SHA256
    assert weights.KNOWN_INCEPTION_SHA256.startswith("6726825d")
    assert weights.expected_inception_sha256(EvalConfig(extractor="inception-v3-compat", inception_weights_sha256="ab" * 32)) \
        == "ab" * 32
