"""What a metric was measured with, so that only like is compared with like.

A FID is only comparable with another FID measured by the same extractor (and weights), on
the same reference data, with the same number of samples. Every result therefore carries an
``EvalProtocol``; the gate asks ``differences`` before it compares two numbers. Runs and model
versions store it as one JSON tag ``eval.protocol`` (``packed_tag``: a tag list is what the UI
shows per row; runs add the fields users filter on as ``eval.<field>``). ``from_tags`` reads
the packed tag, and the per-field tags older versions wrote.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any

TAG_PREFIX = "eval."
PACKED_TAG = "eval.protocol"


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
    uncertainty: str | None = None  # how _se/_ci_low/_ci_high were measured
    floor: str | None = None  # which real images _floor measured
    extractor_device: str | None = None  # where the extractor was trained (its sha256 decides)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able), e.g. for metrics files."""
        return asdict(self)

    def to_tags(self) -> dict[str, str]:
        """``eval.<field>`` string tags (MLflow tags are strings; None becomes '')."""
        return protocol_tags(self.as_dict())

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> EvalProtocol | None:
        """The protocol recorded in ``eval.*`` tags; None when there is none. Fields an older
        version did not record come back as None (and so differ from a recorded value)."""
        if tags.get(PACKED_TAG):
            try:
                # the packed tag wins: a run evaluated again keeps an older version's
                # per-field tags, which would otherwise mask the newer protocol
                tags = {**tags, **protocol_tags(json.loads(tags[PACKED_TAG]))}
            except (ValueError, TypeError, AttributeError):
                return None  # not a protocol we wrote: no comparison can rest on it
        if not tags.get(f"{TAG_PREFIX}extractor"):
            return None
        hints = typing.get_type_hints(cls)
        values = {f.name: _parse(tags.get(f"{TAG_PREFIX}{f.name}"), hints[f.name])
                  for f in fields(cls)}
        return cls(**values)

    def differences(self, other: EvalProtocol) -> list[str]:
        """Fields that differ between two measurements, except those free to differ."""
        mine, theirs = self.as_dict(), other.as_dict()
        return sorted(k for k in mine if k not in FREE_FIELDS and mine[k] != theirs[k])


# Protocol fields that may differ between two comparable measurements: they do not change the
# metric's value. (The extractor's device does not either: a GPU-trained extractor has other
# bytes, so its sha256 differs, and that field is compared.)
FREE_FIELDS = frozenset({"seed", "extractor_test_accuracy", "uncertainty", "floor",
                         "extractor_device"})


def _parse(text: str | None, hint: Any) -> Any:
    if text is None or text == "":
        return None
    kinds = typing.get_args(hint) or (hint,)
    for kind in (int, float):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                return text  # a value of another shape: kept, so it differs from a number
    return text


def protocol_tags(protocol: dict[str, Any]) -> dict[str, str]:
    """A protocol (``EvalProtocol.as_dict()``) as string tags ``eval.<field>`` (MLflow tags are
    strings)."""
    return {f"{TAG_PREFIX}{k}": "" if v is None else str(v) for k, v in protocol.items()}


def packed_tag(protocol: dict[str, Any]) -> dict[str, str]:
    """A protocol as the one tag ``eval.protocol`` (compact JSON) that model versions carry."""
    return {PACKED_TAG: json.dumps(protocol, separators=(",", ":"), sort_keys=True)}
