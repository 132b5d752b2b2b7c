"""The metric vocabulary: every metric stem once, with what computes it and which way is better.

A metric's name says what measured it: ``<stem>_<extractor>`` (``fid_domain``,
``is_inception``), and a statistic recorded beside a value adds a qualifier
(``fid_domain_se``, ``fid_domain_floor``). The config validator, the gate, the leaderboard,
sweeps and tracking all read names through ``parse`` and directions through ``lower_is_better``,
so adding a metric is one ``METRICS.register`` call here (or in a plugin).
"""

from __future__ import annotations

from dataclasses import dataclass

from ganpkg.registry import FEATURE_EXTRACTORS, Registry


@dataclass(frozen=True)
class Metric:
    """One metric stem: torch-fidelity's key for it, its direction and the flag that enables it."""

    stem: str
    fidelity_key: str | None  # key in torch-fidelity's result dict; None: computed by ganpkg
    lower_is_better: bool
    flag: str  # the eval.* switch that enables it (fid, isc, kid, prc, memorization)
    gateable: bool = True  # can be registry.primary_metric (spreads and checks cannot)
    spread: bool = False  # a statistic of another metric (IS/KID over splits), not a quality


METRICS: Registry = Registry("metric", ())
for _metric in (
    Metric("fid", "frechet_inception_distance", True, "fid"),
    Metric("kid", "kernel_inception_distance_mean", True, "kid"),
    Metric("kid_std", "kernel_inception_distance_std", True, "kid", gateable=False, spread=True),
    Metric("is", "inception_score_mean", False, "isc"),
    Metric("is_std", "inception_score_std", True, "isc", gateable=False, spread=True),
    Metric("precision", "precision", False, "prc"),
    Metric("recall", "recall", False, "prc"),
    Metric("f_score", "f_score", False, "prc"),
    Metric("memorized_fraction", None, True, "memorization", gateable=False),
):
    METRICS.register(_metric.stem)(_metric)

# Statistics stored beside a metric's value, as name suffixes.
QUALIFIERS = ("se", "ci_low", "ci_high", "floor", "baseline")


@dataclass(frozen=True)
class MetricName:
    """A parsed metric name: stem, extractor short name and an optional qualifier."""

    metric: Metric
    extractor: str
    qualifier: str | None = None

    def __str__(self) -> str:
        return metric_name(self.metric.stem, self.extractor, self.qualifier)

    @property
    def value_name(self) -> str:
        """The name of the value itself (without a qualifier)."""
        return metric_name(self.metric.stem, self.extractor)


def extractor_short_names() -> dict[str, str]:
    """eval.extractor value → the short name metric names carry (domain, inception, ...)."""
    return {name: FEATURE_EXTRACTORS.get(name).short for name in FEATURE_EXTRACTORS.names()}


def metric_name(stem: str, extractor_short: str, qualifier: str | None = None) -> str:
    """``fid`` + ``domain`` → ``fid_domain``; with qualifier ``se`` → ``fid_domain_se``."""
    name = f"{stem}_{extractor_short}"
    return f"{name}_{qualifier}" if qualifier else name


def qualified(name: str, qualifier: str) -> str:
    """A metric value's name with a qualifier: ``fid_domain`` + ``se`` → ``fid_domain_se``."""
    parsed = parse(name)
    assert parsed is not None, f"{name} is not a metric name"
    return metric_name(parsed.metric.stem, parsed.extractor, qualifier)


def gateable(values: dict[str, float]) -> dict[str, float]:
    """The entries of ``values`` that are gateable metric values (fid/kid/is/…; no spreads)."""
    return {k: v for k, v in values.items()
            if (p := parse(k)) is not None and p.qualifier is None and p.metric.gateable}


def charted(values: dict[str, float]) -> dict[str, float]:
    """The values worth a chart over steps: each metric's own value. What is recorded beside
    it (se, interval, floor, baseline, a spread) is one number per evaluation: a one-dot chart
    says nothing, so it goes to a table and the card instead."""
    return {k: v for k, v in values.items()
            if (p := parse(k)) is not None and p.qualifier is None and not p.metric.spread}


def gate_inputs(values: dict[str, float]) -> dict[str, float]:
    """What a model version records for the gate (its ``metric.*`` tags): each metric's value,
    its se (the comparison's noise), floor and baseline (the first-champion bar); intervals
    and spreads stay in the run's evaluation files."""
    return {k: v for k, v in values.items()
            if (p := parse(k)) is not None and not p.metric.spread
            and p.qualifier in (None, "se", "floor", "baseline")}


def parse(name: str) -> MetricName | None:
    """``fid_domain_se`` → MetricName(fid, domain, se); None for what is not a metric name
    (losses, images/s, ...)."""
    shorts = set(extractor_short_names().values())
    for qualifier in (None, *QUALIFIERS):
        base = name if qualifier is None else name.removesuffix(f"_{qualifier}")
        if qualifier is not None and base == name:
            continue
        # Longest stems first: is_std_domain is is_std, not is with extractor std_domain.
        for stem in sorted(METRICS.names(), key=len, reverse=True):
            extractor = base.removeprefix(f"{stem}_")
            if extractor != base and extractor in shorts:
                return MetricName(METRICS.get(stem), extractor, qualifier)
    return None


def lower_is_better(name: str) -> bool:
    """The direction of a metric name (qualifiers share their value's); True for non-metrics
    such as losses."""
    parsed = parse(name)
    return True if parsed is None else parsed.metric.lower_is_better


def name_fidelity_results(raw: dict[str, float], extractor_short: str) -> dict[str, float]:
    """torch-fidelity's result dict → metric names that say what measured them."""
    by_key = {m.fidelity_key: m.stem for m in map(METRICS.get, METRICS.names()) if m.fidelity_key}
    out = {}
    for key, value in raw.items():
        assert key in by_key, f"unexpected torch-fidelity metric {key}"
        out[metric_name(by_key[key], extractor_short)] = float(value)
    return out


def check_primary_metric(name: str, extractor: str, enabled: dict[str, bool]) -> None:
    """Refuse a gate metric evaluation will not produce: unknown, not gateable, measured by
    another extractor, or switched off. Raises ValueError (the config turns it into one line)."""
    parsed = parse(name)
    gateable = [m.stem for m in map(METRICS.get, METRICS.names()) if m.gateable]
    short = FEATURE_EXTRACTORS.get(extractor).short
    if parsed is None or parsed.qualifier is not None or not parsed.metric.gateable:
        raise ValueError(f"{name!r} is not a gate metric; use <stem>_{short} with stem one of "
                         f"{', '.join(gateable)}")
    if parsed.extractor != short:
        raise ValueError(f"{name} is not measured with eval.extractor {extractor}; use "
                         f"{parsed.metric.stem}_{short}")
    if not enabled.get(parsed.metric.flag, False):
        raise ValueError(f"{name} needs eval.{parsed.metric.flag}=true")


@dataclass(frozen=True)
class MetricSummary:
    """A metric's value with the statistics recorded beside it (None where not measured)."""

    name: str
    value: float
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    floor: float | None = None
    baseline: float | None = None

    @property
    def times_floor(self) -> float | None:
        """value / floor for lower-is-better metrics (how far from real data), else None."""
        if self.floor is None or self.floor <= 0 or not lower_is_better(self.name):
            return None
        return self.value / self.floor

    def describe(self) -> str:
        """``fid_domain 12.87 ± 0.08 [12.71, 13.03], floor 0.81 (15.9× the floor), baseline
        1523``: the one wording the CLI, model card and lineage use."""
        text = f"{self.name} {self.value:.4g}"
        if self.se is not None:
            text += f" ± {self.se:.2g}"
        if self.ci_low is not None and self.ci_high is not None:
            text += f" [{self.ci_low:.4g}, {self.ci_high:.4g}]"
        if self.floor is not None:
            text += f", floor {self.floor:.4g}"
            if self.times_floor is not None:
                text += f" ({self.times_floor:.1f}× the floor)"
        if self.baseline is not None:
            text += f", baseline {self.baseline:.4g}"
        return text


def summarize(values: dict[str, float]) -> list[MetricSummary]:
    """Metric values (any names; non-metrics are skipped) grouped with their qualifiers."""
    grouped: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        parsed = parse(key)
        if parsed is not None:
            grouped.setdefault(parsed.value_name, {})[parsed.qualifier or "value"] = value
    return [MetricSummary(name, stats["value"], **{q: stats.get(q) for q in QUALIFIERS})
            for name, stats in sorted(grouped.items()) if "value" in stats]
