"""What a metric was measured with, and the names metrics carry.

A FID is only comparable with another FID measured by the same extractor (and weights), on
the same reference data, with the same number of samples. Every result therefore carries an
``EvalProtocol``; ``comparable_with`` is what a gate asks before comparing two numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# config value → (name registered in torch-fidelity, short name used in metric names)
EXTRACTORS: dict[str, tuple[str, str]] = {
    "inception-v3-compat": ("inception-v3-compat", "inception"),
    "domain": ("ganpkg-domain", "domain"),
}

# torch-fidelity's result keys → ganpkg's metric stems (the extractor is appended)
_METRIC_STEMS = {
    "frechet_inception_distance": "fid",
    "inception_score_mean": "is",
    "inception_score_std": "is_std",
    "kernel_inception_distance_mean": "kid",
    "kernel_inception_distance_std": "kid_std",
    "precision": "precision",
    "recall": "recall",
    "f_score": "f_score",
}


def metric_name(stem: str, extractor: str) -> str:
    """`fid` + `inception-v3-compat` → `fid_inception`; `fid` + `domain` → `fid_domain`."""
    return f"{stem}_{EXTRACTORS[extractor][1]}"


def name_metrics(raw: dict[str, float], extractor: str) -> dict[str, float]:
    """torch-fidelity's result dict → ganpkg metric names that say what measured them."""
    out = {}
    for key, value in raw.items():
        stem = _METRIC_STEMS.get(key)
        assert stem is not None, f"unexpected torch-fidelity metric {key}"
        out[metric_name(stem, extractor)] = float(value)
    return out


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that must match for two metric values to be comparable."""

    extractor: str
    extractor_weights_sha256: str
    n_samples: int
    seed: int
    reference_split: str
    reference_n: int
    reference_md5: str
    resize: str
    isc_splits: int
    kid_subsets: int
    kid_subset_size: int
    prc_neighborhood: int
    torch_fidelity: str
    extractor_test_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able), e.g. for metrics files."""
        return asdict(self)

    def comparable_with(self, other: EvalProtocol) -> bool:
        """Same measurement: everything but the FREE_FIELDS."""
        mine = {k: v for k, v in self.as_dict().items() if k not in FREE_FIELDS}
        theirs = {k: v for k, v in other.as_dict().items() if k not in FREE_FIELDS}
        return mine == theirs


# Protocol fields that may differ between two comparable measurements.
FREE_FIELDS = frozenset({"seed", "extractor_test_accuracy"})


def protocol_tags(protocol: dict[str, Any]) -> dict[str, str]:
    """A protocol (``EvalProtocol.as_dict()``) as string tags ``eval.<field>``, for runs and model
    versions alike (MLflow tags are strings)."""
    return {f"eval.{k}": "" if v is None else str(v) for k, v in protocol.items()}


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (weights files are ~100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def md5_files(paths: list[Path], chunk_bytes: int = 1 << 22) -> str:
    """One md5 over the bytes of several files, in the given order."""
    digest = hashlib.md5()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk_bytes):
                digest.update(block)
    return digest.hexdigest()
