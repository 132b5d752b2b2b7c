"""The feature extractors an evaluation can use (``eval.extractor``), their weights resolved and
sha256-checked, and the fail-fast check.

Each extractor registers in ``FEATURE_EXTRACTORS`` with the name params.yaml uses, the name
torch-fidelity knows it by, the short name metric names carry and how it finds its weights.

torch-fidelity downloads its Inception weights on first use; an air-gapped machine cannot, and
learning that after hours of training is the worst time. ``check_eval_ready`` runs before
training: it finds the weights (``eval.inception_weights``, torch's hub cache, or a download
into that cache), checks their sha256, and otherwise fails with one line saying how to fix it.
The resolved path is always handed to torch-fidelity explicitly, so it never downloads itself.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ganpkg.config import AUTO_EXTRACTOR, extractor_for
from ganpkg.errors import UserError
from ganpkg.files import atomic_write, hash_file
from ganpkg.registry import FEATURE_EXTRACTORS

if TYPE_CHECKING:
    from ganpkg.config import Config, EvalConfig


@dataclass(frozen=True)
class ExtractorSpec:
    """A feature extractor resolved to a weights file whose sha256 is known."""

    extractor: str  # the eval.extractor value
    fidelity_name: str  # its name in torch-fidelity's registry
    weights_path: str
    weights_sha256: str
    input_resolution: int | None  # what images are resized to; None = their own size
    resize_kind: str = "bilinear"  # how (part of the protocol)
    test_accuracy: float | None = None  # domain extractor: accuracy on the held-out images
    data_md5: str | None = None  # domain extractor: the prepared data it was trained on
    device: str | None = None  # domain extractor: where it was trained (cpu bytes are reproducible)

    def resize(self, resolution: int) -> str:
        """How images of `resolution` reach the network (part of the protocol)."""
        target = self.input_resolution
        if target is None or target == resolution:
            return "none"
        return f"{self.resize_kind} {resolution}->{target}"


# -- Inception-v3 (torch-fidelity's port of the TF FID network) --------------------------------
def inception_url() -> str:
    """The URL torch-fidelity downloads its Inception weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


# The full sha256 of torch-fidelity 0.4.0's weights-inception-2015-12-05-6726825d.pth. The URL
# carries only its first 8 hex digits (torch hub's convention): 32 bits, which a forged file can
# match in hours, and torch-fidelity unpickles the file (weights_only=False).
KNOWN_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def expected_inception_sha256(cfg: EvalConfig) -> str:
    """The pinned digest (eval.inception_weights_sha256), else the known file's full sha256
    when torch-fidelity's URL names that file (its prefix), else the URL's prefix."""
    if cfg.inception_weights_sha256:
        return cfg.inception_weights_sha256
    match = re.search(r"-([0-9a-f]{8,64})\.pth$", inception_url())
    assert match, f"no hash in torch-fidelity's weights URL {inception_url()}"
    if KNOWN_INCEPTION_SHA256.startswith(match.group(1)):
        return KNOWN_INCEPTION_SHA256
    return match.group(1)


def check_inception_file(path: Path, key: str) -> None:
    """A file pinned by the user's own sha256 (not the known one) must hold plain tensors that
    torch-fidelity's Inception accepts: read with weights_only first (torch-fidelity itself
    unpickles without that restriction), then loaded into the network."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  any refusal means: not plain weights
        raise UserError(f"{key}: {path} is not a plain weights file (it needs unpickling, "
                        f"{err.__class__.__name__}); refusing to load it") from None
    if not isinstance(state, dict):
        raise UserError(f"{key}: {path} holds no state dict; not Inception weights")
    try:
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                    feature_extractor_weights_path=str(path))
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).splitlines()[0][:160] if str(err) else err.__class__.__name__
        raise UserError(f"{key}: {path} matches eval.inception_weights_sha256 but is not "
                        f"torch-fidelity's Inception-v3 weights ({first})") from None


def inception_hub_path() -> Path:
    """Where torch hub (and so torch-fidelity) keeps the downloaded Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / inception_url().rsplit("/", 1)[-1]


def download_inception(dest: Path, timeout_s: float = 60.0) -> None:
    """Fetch the Inception weights into `dest` (atomically); raises OSError when offline."""
    with atomic_write(dest) as out, urllib.request.urlopen(inception_url(),
                                                           timeout=timeout_s) as resp:
        while block := resp.read(1 << 20):
            out.write(block)


def _verified(path: Path, expected: str, key: str) -> str:
    sha = hash_file(path, "sha256")
    if not sha.startswith(expected):
        raise UserError(
            f"{key}: {path} has sha256 {sha[:16]}…, expected {expected[:16]}…; it is not the "
            f"file torch-fidelity uses ({inception_url()}): download it again"
        )
    return sha


@FEATURE_EXTRACTORS.register("inception-v3-compat")
class InceptionExtractor:
    """torch-fidelity's Inception-v3 (the FID/IS/KID papers' network), 299² tf1-bilinear."""

    fidelity_name = "inception-v3-compat"
    short = "inception"
    dvc_stage = None  # downloaded (or copied), not trained

    @staticmethod
    def resolve(cfg: EvalConfig, download: bool = True) -> ExtractorSpec:
        """Weights from eval.inception_weights, the hub cache, or a download; sha-checked."""
        expected = expected_inception_sha256(cfg)
        if cfg.inception_weights:
            path = Path(cfg.inception_weights).expanduser()
            if not path.is_file():
                raise UserError(
                    f"eval.inception_weights: {path} not found; copy torch-fidelity's "
                    f"{inception_url().rsplit('/', 1)[-1]} there, or use eval.extractor=domain"
                )
            key = "eval.inception_weights"
        else:
            path = inception_hub_path()
            key = "Inception weights in torch hub's cache"
            if not path.is_file():
                reason = "downloads are off"
                if download:
                    try:
                        download_inception(path)
                    except OSError as err:
                        reason = f"downloading failed: {getattr(err, 'reason', err)}"
                if not path.is_file():
                    raise UserError(
                        f"eval.extractor is inception-v3-compat but its weights are unavailable "
                        f"({reason}): fetch {inception_url()} on a connected machine and set "
                        f"eval.inception_weights=/path/to/that/file, or set eval.extractor=domain"
                    )
        sha = _verified(path, expected, key)
        if sha != KNOWN_INCEPTION_SHA256:
            check_inception_file(path, key)
        return ExtractorSpec("inception-v3-compat", InceptionExtractor.fidelity_name, str(path),
                             sha, input_resolution=299, resize_kind="tf1-bilinear")


def _resolve_trained(cfg: EvalConfig, name: str) -> ExtractorSpec:
    """A trained extractor (eval.<name>.weights), validated as its format, registered with
    torch-fidelity under its fidelity_name on first use."""
    # Imported here: it imports torch-fidelity (seconds), which config validation and the
    # commands that never evaluate should not pay for.
    from ganpkg.evaluation import extractor_domain as trained

    entry = FEATURE_EXTRACTORS.get(name)
    path = Path(getattr(cfg, name).weights)
    if not path.is_file():
        raise UserError(
            f"eval.{name}.weights: {path} not found; train it once per data version with "
            f"`dvc repro {entry.dvc_stage}` (or `ganpkg train-extractor {name}`)"
        )
    cls = {"domain": trained.FeatureExtractorDomain,
           "selfsup": trained.FeatureExtractorSelfSup}[name]
    meta = trained.read_extractor_file(path, cls.expected_format)
    trained.register_domain_extractor(entry.fidelity_name, cls)
    accuracy = meta.get("test_accuracy")
    return ExtractorSpec(
        name, entry.fidelity_name, str(path), hash_file(path, "sha256"),
        input_resolution=int(meta["resolution"]),
        test_accuracy=None if accuracy is None else float(accuracy),
        data_md5=str(meta["data_md5"]), device=meta.get("device"),
    )


# -- the domain classifier (extractor_domain.py) ------------------------------------------------
@FEATURE_EXTRACTORS.register("domain")
class DomainExtractor:
    """The small classifier the train_extractor stage trains on the prepared labels."""

    fidelity_name = "ganpkg-domain"
    short = "domain"
    dvc_stage = "train_extractor"

    @staticmethod
    def resolve(cfg: EvalConfig, download: bool = True) -> ExtractorSpec:
        """The trained domain classifier named by eval.domain.weights."""
        return _resolve_trained(cfg, "domain")


# -- the label-free encoder (extractor_selfsup.py) ----------------------------------------------
@FEATURE_EXTRACTORS.register("selfsup")
class SelfSupExtractor:
    """The contrastive encoder the train_selfsup stage trains on the prepared images, no labels."""

    fidelity_name = "ganpkg-selfsup"
    short = "selfsup"
    dvc_stage = "train_selfsup"

    @staticmethod
    def resolve(cfg: EvalConfig, download: bool = True) -> ExtractorSpec:
        """The trained label-free encoder named by eval.selfsup.weights."""
        return _resolve_trained(cfg, "selfsup")


def all_labeled(labels) -> bool:
    """Whether labels (-1 = none) can train the label classifier: every image has one, and
    there are at least two classes."""
    import numpy as np

    labels = np.asarray(labels)
    return bool(len(labels) and (labels >= 0).all() and len(np.unique(labels)) >= 2)


def resolve_auto(config: Config) -> Config:
    """``eval.extractor: auto`` (and a bare gate metric) made concrete from the prepared data's
    labels (Config.with_extractor_for); unchanged while the data is not prepared yet."""
    from ganpkg.data.prepared import open_prepared

    if not Path(config.data.prepared_dir, "labels.npy").is_file():
        return config
    return config.with_extractor_for(all_labeled(open_prepared(config.data.prepared_dir).labels))


def resolve_extractor(cfg: EvalConfig, download: bool = True, labels=None) -> ExtractorSpec:
    """The extractor eval.extractor names, with verified weights (UserError when unavailable);
    ``auto`` is decided by ``labels`` (the prepared data's)."""
    name = cfg.extractor
    if name == AUTO_EXTRACTOR:
        assert labels is not None, "eval.extractor auto needs the prepared labels to resolve"
        name = extractor_for(all_labeled(labels))
        cfg = cfg.model_copy(update={"extractor": name})
    return FEATURE_EXTRACTORS.get(name).resolve(cfg, download=download)


# Bytes per feature value held while measuring: torch-fidelity's float32 features, their float64
# statistics and the bootstrap's resampled copies.
BYTES_PER_FEATURE = 32


def check_feature_memory(cfg: EvalConfig) -> None:
    """eval.n_samples whose features cannot fit in memory now: refused before any work."""
    from ganpkg.device import available_memory

    widths = {"domain": cfg.domain.feature_dim, "selfsup": cfg.selfsup.feature_dim}
    widths[AUTO_EXTRACTOR] = max(widths.values())  # one of the two, not yet known which
    width = widths.get(cfg.extractor, 2048)  # Inception's pool3
    need = max(cfg.n_samples, cfg.memorization_n_samples) * width * BYTES_PER_FEATURE
    free = available_memory()
    if free is not None and need > free:
        raise UserError(f"eval.n_samples {cfg.n_samples}: its features need about "
                        f"{need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB are free; at most "
                        f"about {free // (width * BYTES_PER_FEATURE)} here")


def check_eval_ready(config: Config, download: bool = True,
                     need_domain_weights: bool = False) -> ExtractorSpec | None:
    """Fail fast, before training, when evaluation could not run; one-line UserError says how.

    Inception: the weights must be found (or downloaded) and match their sha256. Domain: the
    classifier is trained by the `train_extractor` stage after `prepare`, so its absence is only
    an error when ``need_domain_weights`` (a file that is there must be a valid one).
    """
    config = resolve_auto(config)
    cfg = config.eval
    check_feature_memory(cfg)
    if cfg.extractor == AUTO_EXTRACTOR:  # no prepared data yet: its stages train the extractor
        return None
    if FEATURE_EXTRACTORS.get(cfg.extractor).dvc_stage and not need_domain_weights \
            and not Path(getattr(cfg, cfg.extractor).weights).is_file():
        return None
    return resolve_extractor(cfg, download=download)
