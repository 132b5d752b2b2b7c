"""Which extractor weights an evaluation uses, sha256-checked, and the fail-fast check.

torch-fidelity downloads its Inception weights on first use; an air-gapped machine cannot, and
learning that after hours of training is the worst time. ``check_eval_ready`` runs before
training: it finds the weights (``eval.inception_weights``, torch's hub cache, or a download
into that cache), checks their sha256, and otherwise fails with one line saying how to fix it.
The resolved path is always handed to torch-fidelity explicitly, so it never downloads itself.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ganpkg.config import Config, EvalConfig
from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import EXTRACTORS, sha256_file

DOMAIN_FORMAT = "ganpkg-domain-extractor/1"
_SHA_MEMO: dict[tuple, str] = {}


@dataclass(frozen=True)
class ExtractorSpec:
    """A feature extractor resolved to a weights file whose sha256 is known."""

    extractor: str  # the eval.extractor value
    fidelity_name: str  # its name in torch-fidelity's registry
    weights_path: str
    weights_sha256: str
    input_resolution: int | None  # what images are resized to; None = their own size
    test_accuracy: float | None = None  # domain extractor: accuracy on the held-out images
    data_md5: str | None = None  # domain extractor: the prepared data it was trained on

    def resize(self, resolution: int) -> str:
        """How images of `resolution` reach the network (part of the protocol)."""
        target = self.input_resolution
        if target is None or target == resolution:
            return "none"
        kind = "tf1-bilinear" if self.extractor == "inception-v3-compat" else "bilinear"
        return f"{kind} {resolution}->{target}"


def cached_sha256(path: str | Path) -> str:
    """sha256 of a file, memoized per (path, size, mtime): weights are hashed once a process."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def inception_url() -> str:
    """The URL torch-fidelity downloads its Inception weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def expected_inception_sha256(cfg: EvalConfig) -> str:
    """The pinned digest, or the sha256 prefix torch hub's file-name convention puts in the URL."""
    if cfg.inception_weights_sha256:
        return cfg.inception_weights_sha256
    match = re.search(r"-([0-9a-f]{8,64})\.pth$", inception_url())
    assert match, f"no hash in torch-fidelity's weights URL {inception_url()}"
    return match.group(1)


def inception_hub_path() -> Path:
    """Where torch hub (and so torch-fidelity) keeps the downloaded Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / inception_url().rsplit("/", 1)[-1]


def download_inception(dest: Path, timeout_s: float = 60.0) -> None:
    """Fetch the Inception weights into `dest` (atomically); raises OSError when offline."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(inception_url(),
                                                                timeout=timeout_s) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verified(path: Path, expected: str, key: str) -> str:
    sha = cached_sha256(path)
    if not sha.startswith(expected):
        raise UserError(
            f"{key}: {path} has sha256 {sha[:16]}…, expected {expected[:16]}…; it is not the "
            f"file torch-fidelity uses ({inception_url()}): download it again"
        )
    return sha


def resolve_inception(cfg: EvalConfig, download: bool = True) -> ExtractorSpec:
    """Inception weights from eval.inception_weights, the hub cache, or a download; sha-checked."""
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
    name = EXTRACTORS["inception-v3-compat"][0]
    return ExtractorSpec("inception-v3-compat", name, str(path), sha, input_resolution=299)


def read_domain_meta(path: str | Path) -> dict:
    """The domain extractor file (weights-only torch.save), validated as ours."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        # torch.load fails on junk in many ways (struct.error, UnpicklingError, EOFError, ...);
        # whatever the way, the file is the user's to replace.
        raise UserError(f"eval.domain.weights: {path} is not readable ({err.__class__.__name__}); "
                        f"retrain it with `dvc repro train_extractor`") from None
    if not isinstance(blob, dict) or blob.get("format") != DOMAIN_FORMAT:
        raise UserError(f"eval.domain.weights: {path} is not a ganpkg domain extractor "
                        f"(expected format {DOMAIN_FORMAT}); retrain it with "
                        f"`dvc repro train_extractor`")
    return blob


def resolve_domain(cfg: EvalConfig) -> ExtractorSpec:
    """The trained domain classifier named by eval.domain.weights."""
    path = Path(cfg.domain.weights)
    if not path.is_file():
        raise UserError(
            f"eval.domain.weights: {path} not found; train it once per data version with "
            f"`dvc repro train_extractor` (or `ganpkg train-extractor`)"
        )
    meta = read_domain_meta(path)
    # torch-fidelity builds extractors from its registry by name: register ours on first use.
    from ganpkg.evaluation.extractor_domain import register_domain_extractor

    register_domain_extractor()
    return ExtractorSpec(
        "domain", EXTRACTORS["domain"][0], str(path), cached_sha256(path),
        input_resolution=int(meta["resolution"]), test_accuracy=float(meta["test_accuracy"]),
        data_md5=str(meta["data_md5"]),
    )


def resolve_extractor(cfg: EvalConfig, download: bool = True) -> ExtractorSpec:
    """The extractor eval.extractor names, with verified weights (UserError when unavailable)."""
    if cfg.extractor == "domain":
        return resolve_domain(cfg)
    return resolve_inception(cfg, download=download)


def check_eval_ready(config: Config, download: bool = True,
                     need_domain_weights: bool = False) -> ExtractorSpec | None:
    """Fail fast, before training, when evaluation could not run; one-line UserError says how.

    Inception: the weights must be found (or downloaded) and match their sha256. Domain: the
    classifier is trained by the `train_extractor` stage after `prepare`, so its absence is only
    an error when ``need_domain_weights`` (a file that is there must be a valid one).
    """
    cfg = config.eval
    if cfg.extractor == "domain" and not need_domain_weights \
            and not Path(cfg.domain.weights).is_file():
        return None
    return resolve_extractor(cfg, download=download)
