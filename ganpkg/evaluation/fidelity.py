"""torch-fidelity's metrics on a generator in memory (no PNGs are written), each with its
bootstrap uncertainty, the floor (held-out real images) and an optional baseline generator.

The generated features are extracted once and torch-fidelity's own metric functions are
chained on them as its ``calculate_metrics`` chains them, so the bootstrap can resample them.

The generator is wrapped as a torch-fidelity generative model whose output is exactly what
torch-fidelity's PNG loader would produce from the same samples saved as PNG: uint8, three
channels (grayscale repeated). torch-fidelity draws z itself from ``eval.seed``, so the same
seed gives the same samples and the same numbers. The reference's features are cached under a
name made of content hashes (see ``reference_stats``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ganpkg.data.prepared import PreparedDataset, float_to_uint8, open_prepared
from ganpkg.errors import UserError
from ganpkg.evaluation.extractors import ExtractorSpec, check_feature_memory, resolve_extractor
from ganpkg.evaluation.memorization import MemorizationReport, memorization_check
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.evaluation.reference_stats import (
    SPLIT_SEED,
    fidelity_device_kwargs,
    prepared_md5,
    reference_features,
)
from ganpkg.evaluation.uncertainty import bootstrap_se, interval
from ganpkg.metrics import gateable, metric_name, name_fidelity_results, qualified
from ganpkg.registry import FEATURE_EXTRACTORS

if TYPE_CHECKING:
    from ganpkg.config import Config, EvalConfig

FLOOR_SEED = SPLIT_SEED + 2  # which held-out images the floor uses: fixed, like the split
_log = logging.getLogger("ganpkg.evaluation")


@contextmanager
def _phase(what: str) -> Iterator[None]:
    """A line as each phase of an evaluation starts, and its seconds when it ends: on a CPU
    the whole takes a minute or more, and a silent minute reads as a hang."""
    _log.info("eval: %s", what)
    start = time.monotonic()
    yield
    _log.info("eval: %s done in %.1fs", what.split(" (")[0], time.monotonic() - start)


class GeneratorSampler(nn.Module):
    """z → uint8 N×3×H×W: the generator's [-1, 1] output rounded exactly as a PNG would store it."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images = float_to_uint8(self.generator(z))
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@dataclass
class EvalResult:
    """Named metrics, the protocol they were measured with, and the memorization check."""

    metrics: dict[str, float]
    protocol: EvalProtocol
    memorization: MemorizationReport | None = None
    raw: dict[str, float] = field(default_factory=dict)  # torch-fidelity's own keys

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (metrics, protocol, memorization)."""
        return {"metrics": self.metrics, "protocol": self.protocol.as_dict(),
                "memorization": self.memorization.as_dict() if self.memorization else None}

    def save(self, path: str | Path) -> Path:
        """Write ``as_dict()`` as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True))
        return path


def check_extractor_matches(spec: ExtractorSpec, dataset: PreparedDataset) -> None:
    """An extractor trained on the prepared data must have been trained on this data version."""
    stage = FEATURE_EXTRACTORS.get(spec.extractor).dvc_stage
    if stage and spec.data_md5 != prepared_md5(dataset):
        raise UserError(
            f"eval.{spec.extractor}.weights: {spec.weights_path} was trained on other data (md5 "
            f"{spec.data_md5[:12]}…, prepared is {prepared_md5(dataset)[:12]}…); retrain it "
            f"with `dvc repro {stage}`"
        )


def _layers(spec: ExtractorSpec, cfg: EvalConfig) -> dict[str, str]:
    """metric flag → the extractor's feature layer for it, for the metrics switched on."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[spec.fidelity_name]
    return {m: cls.get_default_feature_layer_for_metric(m)
            for m in ("isc", "fid", "kid", "prc") if getattr(cfg, m)}


def fidelity_metrics(features: dict, reference: dict, reference_stats: dict,
                     layers: dict[str, str], options: dict, prc: bool = True) -> dict[str, float]:
    """torch-fidelity's metrics of one feature set against the reference, with its own
    functions, as its ``calculate_metrics`` chains them (its keys; ``options`` its kwargs)."""
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric
    from torch_fidelity.metric_prc import prc_featuresdict_to_metric

    out: dict[str, float] = {}
    if "isc" in layers:
        out.update(isc_featuresdict_to_metric(features, layers["isc"], **options))
    if "fid" in layers:
        stats = fid_featuresdict_to_statistics(features, layers["fid"])
        out.update(fid_statistics_to_metric(stats, reference_stats, False))
    if "kid" in layers:
        out.update(kid_featuresdict_to_metric(features, reference, layers["kid"], **options))
    if "prc" in layers and prc:
        out.update(prc_featuresdict_to_metric(features, reference, layers["prc"], **options))
    return {k: float(v) for k, v in out.items()}


def _features(samples: nn.Module | Dataset, n: int, z_dim: int | None, extractor, cfg: EvalConfig,
              cuda: bool) -> dict:
    """Features of a generator's first n samples from eval.seed, or of a Dataset, uncached."""
    from torch_fidelity import GenerativeModelModuleWrapper
    from torch_fidelity.utils import extract_featuresdict_from_input_id

    if isinstance(samples, nn.Module):
        assert z_dim is not None, "a generator needs z_dim"
        device = torch.device("cuda" if cuda else "cpu")
        samples = GenerativeModelModuleWrapper(GeneratorSampler(samples.to(device)), int(z_dim),
                                               "normal", 0)
    return extract_featuresdict_from_input_id(
        1, extractor, input1=samples, input1_model_num_samples=n, batch_size=cfg.batch_size,
        cuda=cuda, rng_seed=cfg.seed, verbose=False, save_cpu_ram=True)


def floor_split(cfg: EvalConfig) -> str:
    """Real images outside the reference, for the floor (the holdout unless it is the reference)."""
    return "train" if cfg.reference_split == "holdout" else "holdout"


def calculate(samples: nn.Module | Dataset, dataset: PreparedDataset, cfg: EvalConfig,
              spec: ExtractorSpec, z_dim: int | None = None,
              baseline: nn.Module | None = None) -> EvalResult:
    """Metrics of `samples` (a generator, or a Dataset of uint8 images) against the reference,
    each with its bootstrap standard error and interval, and the floor (held-out real images
    of the same count against the same reference).

    A generator needs `z_dim`; eval.n_samples of its samples are drawn from eval.seed. A
    Dataset (e.g. real images, for sanity checks) is used whole. ``baseline``, a generator of
    the same shape (e.g. at initialization), is measured the same way as ``<metric>_baseline``.
    """
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics
    from torch_fidelity.utils import create_feature_extractor

    check_extractor_matches(spec, dataset)
    cuda = fidelity_device_kwargs(cfg.device)["cuda"]
    n = cfg.n_samples if isinstance(samples, nn.Module) else len(samples)
    layers = _layers(spec, cfg)
    wanted = sorted(set(layers.values()))
    extractor = create_feature_extractor(
        spec.fidelity_name, wanted, cuda=cuda, feature_extractor_weights_path=spec.weights_path)
    with _phase(f"reference features ({cfg.reference_split} split; cached after the first)"):
        reference = reference_features(dataset, cfg, spec, layers=wanted, extractor=extractor)
    n_ref = len(next(iter(reference.values())))
    reference_stats = (fid_featuresdict_to_statistics(reference, layers["fid"])
                       if "fid" in layers else None)

    def kid_subset_size(n_input: int) -> int:
        # KID draws subsets of this size from both sides; small protocols cap it (recorded).
        return min(cfg.kid_subset_size, n_input, n_ref)

    def measure(features: dict, n_input: int, prc: bool = True,
                kid_subsets: int = cfg.kid_subsets) -> dict[str, float]:
        options = {"isc_splits": cfg.isc_splits, "kid_subsets": kid_subsets,
                   "kid_subset_size": kid_subset_size(n_input), "rng_seed": cfg.seed,
                   "prc_neighborhood": cfg.prc_neighborhood, "cuda": cuda,
                   "batch_size": cfg.batch_size, "verbose": False}
        try:
            return fidelity_metrics(features, reference, reference_stats, layers, options, prc)
        except ValueError as err:  # torch-fidelity's vassert: something the user controls
            raise UserError(f"torch-fidelity: {err}") from None

    with _phase(f"features of {n} {'generated' if z_dim else 'given'} images and their "
                f"metrics ({spec.extractor})"):
        features = _features(samples, n, z_dim, extractor, cfg, cuda)
        raw = measure(features, n)
    short = FEATURE_EXTRACTORS.get(spec.extractor).short
    named = name_fidelity_results(raw, short)
    if cfg.bootstrap_resamples > 1:
        # KID on fewer subsets per resample: its spread, not its value, is what is wanted here.
        subsets = max(2, cfg.kid_subsets // 10)
        with _phase(f"standard errors ({cfg.bootstrap_resamples} bootstrap resamples)"):
            se = bootstrap_se(features, lambda f: measure(f, n, prc=False, kid_subsets=subsets),
                              cfg.bootstrap_resamples, cfg.seed + 1)
        for key, value in gateable(name_fidelity_results(se, short)).items():
            low, high = interval(named[key], value, cfg.confidence)
            named.update({qualified(key, "se"): value, qualified(key, "ci_low"): low,
                          qualified(key, "ci_high"): high})
    floor_n = None
    if cfg.floor:
        with _phase(f"floor (held-out real images, {floor_split(cfg)} split)"):
            real = reference_features(dataset, cfg, spec, split=floor_split(cfg),
                                      layers=wanted, extractor=extractor)
            count = len(next(iter(real.values())))
            pick = torch.from_numpy(np.sort(
                np.random.RandomState(FLOOR_SEED).permutation(count)[:n]))
            floor_n = len(pick)
            if floor_n > 1:
                floor = measure({k: v[pick] for k, v in real.items()}, floor_n)
                named.update(_qualified(name_fidelity_results(floor, short), "floor"))
    if baseline is not None:
        with _phase(f"baseline (the generator at initialization, {n} images)"):
            base = measure(_features(baseline, n, z_dim, extractor, cfg, cuda), n)
            named.update(_qualified(name_fidelity_results(base, short), "baseline"))
    protocol = EvalProtocol(
        extractor=spec.extractor, extractor_weights_sha256=spec.weights_sha256, n_samples=n,
        seed=cfg.seed, reference_split=cfg.reference_split, reference_n=n_ref,
        reference_md5=prepared_md5(dataset), resize=spec.resize(dataset.resolution),
        isc_splits=cfg.isc_splits, kid_subsets=cfg.kid_subsets,
        kid_subset_size=kid_subset_size(n), prc_neighborhood=cfg.prc_neighborhood,
        torch_fidelity=_fidelity_version(), extractor_test_accuracy=spec.test_accuracy,
        uncertainty=(f"bootstrap of the generated features, {cfg.bootstrap_resamples} "
                     f"resamples, intervals at {cfg.confidence:g}"
                     if cfg.bootstrap_resamples > 1 else "none"),
        floor=f"{floor_split(cfg)} split, n={floor_n}" if floor_n else "none",
        extractor_device=spec.device,
    )
    return EvalResult(named, protocol, raw=raw)


def _qualified(values: dict[str, float], qualifier: str) -> dict[str, float]:
    """Gateable metrics' values renamed with a qualifier (fid_domain → fid_domain_floor)."""
    return {qualified(k, qualifier): v for k, v in gateable(values).items()}


def _fidelity_version() -> str:
    from torch_fidelity.version import __version__

    return __version__


def evaluate_generator(generator: nn.Module, z_dim: int, dataset: PreparedDataset,
                       cfg: EvalConfig, out_dir: str | Path | None = None,
                       spec: ExtractorSpec | None = None,
                       baseline: nn.Module | None = None) -> EvalResult:
    """The library call the pipeline makes: metrics (+ memorization check) of a generator.

    With ``out_dir``, writes ``eval.json`` and the closest-pairs PNG there.
    """
    spec = spec or resolve_extractor(cfg, labels=dataset.labels)
    generator = generator.eval()
    result = calculate(generator, dataset, cfg, spec, z_dim=z_dim,
                       baseline=baseline.eval() if baseline is not None else None)
    if cfg.memorization:
        with _phase(f"memorization check ({cfg.memorization_n_samples} samples against the "
                    f"training images)"):
            report = memorization_check(GeneratorSampler(generator), z_dim, dataset, cfg, spec,
                                        out_dir=out_dir)
        result.memorization = report
        short = FEATURE_EXTRACTORS.get(spec.extractor).short
        result.metrics[metric_name("memorized_fraction", short)] = report.memorized_fraction
    if out_dir is not None:
        result.save(Path(out_dir) / "eval.json")
    return result


def evaluate_checkpoint(checkpoint: str | Path, config: Config,
                        out_dir: str | Path | None = None) -> tuple[EvalResult, dict]:
    """Evaluate the EMA generator of a checkpoint on config.data.prepared_dir with config.eval.

    Returns (result, checkpoint info). The checkpoint's own data shape must match the data.
    """
    from ganpkg.checkpoint import load_generator

    if not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint {checkpoint}: file not found")
    check_feature_memory(config.eval)
    generator, info = load_generator(checkpoint)  # a broken one is refused before any work
    dataset = open_prepared(config.data.prepared_dir)
    spec = resolve_extractor(config.eval, labels=dataset.labels)
    if (info["channels"], info["resolution"]) != (dataset.channels, dataset.resolution):
        raise UserError(
            f"--checkpoint {checkpoint}: makes {info['channels']}×{info['resolution']}² images "
            f"but {config.data.prepared_dir} holds {dataset.channels}×{dataset.resolution}²"
        )
    baseline = initial_generator(info) if config.eval.baseline else None
    result = evaluate_generator(generator, info["z_dim"], dataset, config.eval, out_dir, spec,
                                baseline)
    return result, info


def initial_generator(info: dict) -> nn.Module:
    """The checkpoint's generator as training started it (its config and seed), untrained:
    the baseline a first champion must clearly beat."""
    from ganpkg.config import Config
    from ganpkg.networks import build_generator

    config = Config.model_validate(info["config"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        return build_generator(config.model, info["channels"], info["resolution"])
