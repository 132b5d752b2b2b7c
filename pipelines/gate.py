"""The promotion gate: version tags in, a decision out (pure: no MLflow, no I/O).

A candidate becomes ``champion`` only if its primary metric is measured, its memorization
check passes, and either there is no champion and it meets the first-champion rule, or the
champion was measured the same way (``EvalProtocol.differences``) and the candidate beats it
by more than ``registry.margin``. Otherwise it is ``challenger``, with the reason in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ganpkg.config import RegistryConfig
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.metrics import metric_name, parse

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"


@dataclass(frozen=True)
class GateDecision:
    """Which alias a version gets, and why (both end up as version tags)."""

    alias: str
    reason: str
    compared_with: str | None = None


def _as_float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def memorization_key(primary_metric: str) -> str:
    """The memorization metric measured with the same extractor as the primary metric."""
    return metric_name("memorized_fraction", parse(primary_metric).extractor)


def protocol_differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Protocol fields (``eval.*`` tags) that differ between two versions' measurements."""
    mine, theirs = EvalProtocol.from_tags(a), EvalProtocol.from_tags(b)
    if mine is None or theirs is None:
        return ["eval.* (protocol missing)"]
    return [f"eval.{field}" for field in mine.differences(theirs)]


def decide(candidate: dict[str, str], champion: dict[str, str] | None,
           champion_version: str | None, cfg: RegistryConfig) -> GateDecision:
    """The promotion gate on version tags (``metric.*``, ``eval.*``).

    champion only if: the primary metric is measured, the memorization check passes, and either
    there is no champion and the metric meets ``first_champion_threshold``, or the champion was
    measured the same way and the candidate beats it by more than ``margin``.
    """
    metric, lower = cfg.primary_metric, cfg.lower_is_better
    value = _as_float(candidate.get(f"metric.{metric}"))
    if value is None:
        return GateDecision(CHALLENGER, f"no finite {metric} measured")
    if not candidate.get("eval.extractor") or not candidate.get("eval.reference_md5"):
        return GateDecision(CHALLENGER, "no evaluation protocol tags (eval.*) on this version")
    mem_key = memorization_key(metric)
    memorized = _as_float(candidate.get(f"metric.{mem_key}"))
    if memorized is None:
        return GateDecision(CHALLENGER, f"memorization check missing ({mem_key}); enable "
                                        "eval.memorization")
    if memorized > cfg.max_memorized_fraction:
        return GateDecision(CHALLENGER, f"memorization check failed: {mem_key} {memorized:.4g} > "
                                        f"registry.max_memorized_fraction "
                                        f"{cfg.max_memorized_fraction:g}")
    if champion is None:
        limit = cfg.first_champion_threshold
        if limit is not None and (value > limit if lower else value < limit):
            return GateDecision(CHALLENGER, f"first version: {metric} {value:.6g} does not meet "
                                            f"registry.first_champion_threshold {limit:g}")
        return GateDecision(CHAMPION, f"first version: {metric} {value:.6g} passes the "
                                      f"absolute checks; memorized {memorized:.4g}")
    best = _as_float(champion.get(f"metric.{metric}"))
    if best is None:
        return GateDecision(CHALLENGER, f"champion v{champion_version} has no {metric}; compare "
                                        "by hand and `ganpkg promote`", champion_version)
    diffs = protocol_differences(candidate, champion)
    if diffs:
        return GateDecision(CHALLENGER, f"not comparable with champion v{champion_version}: "
                                        f"{', '.join(diffs)} differ; compare by hand and "
                                        "`ganpkg promote`", champion_version)
    gain = best - value if lower else value - best
    if gain > cfg.margin:
        return GateDecision(CHAMPION, f"{metric} {value:.6g} beats champion v{champion_version}'s "
                                      f"{best:.6g} by {gain:.4g} > margin {cfg.margin:g}",
                            champion_version)
    return GateDecision(CHALLENGER, f"{metric} {value:.6g} does not beat champion "
                                    f"v{champion_version}'s {best:.6g} by more than margin "
                                    f"{cfg.margin:g}", champion_version)
