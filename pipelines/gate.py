"""The promotion gate: version tags in, a decision out (pure: no MLflow, no I/O).

A candidate becomes ``champion`` only if its primary metric is measured, its memorization
check passes, and either there is no champion and it is clearly better than its baseline (the
generator at initialization, measured on the same protocol), or the champion was measured the
same way (``EvalProtocol.differences``) and the candidate's interval (value ± z·se at
``registry.confidence``) clears the champion's by more than ``registry.margin``. Otherwise it
is ``challenger``. The reason says the test, both intervals and the outcome in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ganpkg.config import RegistryConfig
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.evaluation.uncertainty import interval
from ganpkg.metrics import metric_name, parse, qualified

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
    """Protocol fields that differ between two versions' measurements (``eval.protocol``, or an
    older version's ``eval.*`` tags)."""
    mine, theirs = EvalProtocol.from_tags(a), EvalProtocol.from_tags(b)
    if mine is None or theirs is None:
        return ["eval.protocol (missing)"]
    return [f"eval.{field}" for field in mine.differences(theirs)]


def decide(candidate: dict[str, str], champion: dict[str, str] | None,
           champion_version: str | None, cfg: RegistryConfig) -> GateDecision:
    """The promotion gate on version tags (``metric.*``, ``eval.*``).

    champion only if: the primary metric is measured, the memorization check passes, and either
    there is no champion and the metric closes ``first_champion_fraction`` of the way from its
    baseline to its floor (and meets ``first_champion_threshold`` if set), or the champion was
    measured the same way and the candidate's interval at ``confidence`` clears the champion's
    by more than ``margin``.
    """
    metric, lower = cfg.primary_metric, cfg.lower_is_better
    value = _as_float(candidate.get(f"metric.{metric}"))
    if value is None:
        return GateDecision(CHALLENGER, f"no finite {metric} measured")
    protocol = EvalProtocol.from_tags(candidate)
    if protocol is None or not protocol.reference_md5:
        return GateDecision(CHALLENGER, "no evaluation protocol (eval.protocol) on this version")
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
        return _first_version(candidate, value, memorized, cfg)
    best = _as_float(champion.get(f"metric.{metric}"))
    if best is None:
        return GateDecision(CHALLENGER, f"champion v{champion_version} has no {metric}; compare "
                                        "by hand and `ganpkg promote`", champion_version)
    diffs = protocol_differences(candidate, champion)
    if diffs:
        return GateDecision(CHALLENGER, f"not comparable with champion v{champion_version}: "
                                        f"{', '.join(diffs)} differ; compare by hand and "
                                        "`ganpkg promote`", champion_version)
    mine, theirs = _interval(candidate, metric, cfg), _interval(champion, metric, cfg)
    if mine is None or theirs is None:
        # An older version without standard errors: point values, as the gate used to.
        gain = best - value if lower else value - best
        shown = f"{metric} {value:.6g} {{verb}} champion v{champion_version}'s {best:.6g}"
        how = f"point values: no standard error on {'this version' if mine is None else 'it'}"
    else:
        # The candidate's whole interval must clear the champion's, by more than the margin:
        # evaluation noise alone (an A/A comparison) almost never does that.
        gain = theirs[0] - mine[1] if lower else mine[0] - theirs[1]
        shown = (f"{metric} {value:.6g} [{mine[0]:.6g}, {mine[1]:.6g}] {{verb}} champion "
                 f"v{champion_version}'s {best:.6g} [{theirs[0]:.6g}, {theirs[1]:.6g}]")
        how = f"{cfg.confidence:.0%} intervals, gap between them {gain:.4g}"
    if gain > cfg.margin:
        return GateDecision(CHAMPION, f"{shown.format(verb='beats')} by {gain:.4g} > margin "
                                      f"{cfg.margin:g} ({how})", champion_version)
    return GateDecision(CHALLENGER, f"{shown.format(verb='does not beat')} by more than margin "
                                    f"{cfg.margin:g} ({how})", champion_version)


def _interval(tags: dict[str, str], metric: str, cfg: RegistryConfig) -> tuple[float, float] | None:
    """(low, high) of a version's metric at registry.confidence, from its standard error."""
    value = _as_float(tags.get(f"metric.{metric}"))
    se = _as_float(tags.get(f"metric.{qualified(metric, 'se')}"))
    if value is None or se is None:
        return None
    return interval(value, se, cfg.confidence)


_TINY = 1e-12  # keeps logs finite for a metric of 0 (e.g. a floor that rounds to it)


def progress(value: float, baseline: float, floor: float, lower: bool) -> float | None:
    """How far ``value`` went from ``baseline`` toward ``floor`` on a log scale (0: no better
    than the baseline, 1: as good as real data); None when the baseline is not on the worse
    side of the floor. log(b/v) / log(b/f) reads the same for either direction."""
    b, f, v = (max(x, _TINY) for x in (baseline, floor, value))
    if (b <= f) if lower else (b >= f):
        return None
    return math.log(b / v) / math.log(b / f)


def _first_version(candidate: dict[str, str], value: float, memorized: float,
                   cfg: RegistryConfig) -> GateDecision:
    """No champion yet: the absolute threshold (if set), then clearly better than the baseline."""
    metric, lower = cfg.primary_metric, cfg.lower_is_better
    limit = cfg.first_champion_threshold
    if limit is not None and (value > limit if lower else value < limit):
        return GateDecision(CHALLENGER, f"first version: {metric} {value:.6g} does not meet "
                                        f"registry.first_champion_threshold {limit:g}")
    fraction = cfg.first_champion_fraction
    if fraction is None:
        return GateDecision(CHAMPION, f"first version: {metric} {value:.6g} passes the "
                                      f"absolute checks; memorized {memorized:.4g}")
    baseline = _as_float(candidate.get(f"metric.{qualified(metric, 'baseline')}"))
    floor = _as_float(candidate.get(f"metric.{qualified(metric, 'floor')}"))
    if baseline is None or floor is None:
        return GateDecision(CHALLENGER, f"first version: no baseline and floor of {metric} "
                                        "measured (eval.baseline, eval.floor) to judge it by; "
                                        "set registry.first_champion_fraction=null to skip")
    done = progress(value, baseline, floor, lower)
    where = (f"{metric} {value:.6g}, baseline (the generator at initialization) {baseline:.6g}, "
             f"floor (real vs real) {floor:.6g}")
    if done is None or done < fraction:
        went = "no way" if done is None else f"{max(done, 0):.0%} of the way"
        # The value at `fraction` of the way: b·(f/b)^fraction, in either direction.
        b, f = max(baseline, _TINY), max(floor, _TINY)
        needed = b * (f / b) ** fraction
        sense = "<" if lower else ">"
        return GateDecision(CHALLENGER, f"first version: {where}: it went {went} from the "
                                        f"baseline to the floor (log scale), "
                                        f"registry.first_champion_fraction {fraction:g} needs "
                                        f"{metric} {sense} {needed:.6g}")
    return GateDecision(CHAMPION, f"first version: {where}: {done:.0%} of the way from the "
                                  f"baseline to the floor (>= {fraction:.0%}); memorized "
                                  f"{memorized:.4g}")
