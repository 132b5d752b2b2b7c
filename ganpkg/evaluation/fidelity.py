"""torch-fidelity's ``calculate_metrics`` on a generator in memory (no PNGs are written).

The generator is wrapped as a torch-fidelity generative model whose output is exactly what
torch-fidelity's PNG loader would produce from the same samples saved as PNG: uint8, three
channels (grayscale repeated). torch-fidelity draws z itself from ``eval.seed``, so the same
seed gives the same samples and the same numbers. The real images are input2, their features
and statistics cached under a name made of content hashes (see ``reference_stats``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ganpkg.data.prepared import PreparedDataset, float_to_uint8, open_prepared
from ganpkg.errors import UserError
from ganpkg.evaluation.extractors import ExtractorSpec, resolve_extractor
from ganpkg.evaluation.memorization import MemorizationReport, memorization_check
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.evaluation.reference_stats import (
    fidelity_device_kwargs,
    prepared_md5,
    reference_input,
)
from ganpkg.metrics import metric_name, name_fidelity_results
from ganpkg.registry import FEATURE_EXTRACTORS

if TYPE_CHECKING:
    from ganpkg.config import Config, EvalConfig


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


def _check_extractor_matches(spec: ExtractorSpec, dataset: PreparedDataset) -> None:
    if spec.extractor == "domain" and spec.data_md5 != prepared_md5(dataset):
        raise UserError(
            f"eval.domain.weights: {spec.weights_path} was trained on other data (md5 "
            f"{spec.data_md5[:12]}…, prepared is {prepared_md5(dataset)[:12]}…); retrain it "
            f"with `dvc repro train_extractor`"
        )


def calculate(samples: nn.Module | Dataset, dataset: PreparedDataset, cfg: EvalConfig,
              spec: ExtractorSpec, z_dim: int | None = None) -> EvalResult:
    """Metrics of `samples` (a generator, or a Dataset of uint8 images) against the reference.

    A generator needs `z_dim`; eval.n_samples of its samples are drawn from eval.seed. A
    Dataset (e.g. real images, for sanity checks) is used whole.
    """
    from torch_fidelity import GenerativeModelModuleWrapper, calculate_metrics

    _check_extractor_matches(spec, dataset)
    device_kwargs = fidelity_device_kwargs(cfg.device)
    if isinstance(samples, nn.Module):
        assert z_dim is not None, "a generator needs z_dim"
        device = torch.device("cuda" if device_kwargs["cuda"] else "cpu")
        sampler = GeneratorSampler(samples.to(device))
        input1 = GenerativeModelModuleWrapper(sampler, int(z_dim), "normal", 0)
        n = cfg.n_samples
    else:
        input1, n = samples, len(samples)
    reference, reference_name = reference_input(dataset, cfg, spec)
    # KID draws subsets of this size from both sides; small protocols cap it (recorded).
    kid_subset_size = min(cfg.kid_subset_size, n, len(reference))
    kwargs = dict(
        input1=input1, input1_model_num_samples=n,
        input2=reference, input2_cache_name=reference_name,
        feature_extractor=spec.fidelity_name, feature_extractor_weights_path=spec.weights_path,
        fid=cfg.fid, isc=cfg.isc, kid=cfg.kid, prc=cfg.prc, batch_size=cfg.batch_size,
        rng_seed=cfg.seed, isc_splits=cfg.isc_splits, kid_subsets=cfg.kid_subsets,
        kid_subset_size=kid_subset_size, prc_neighborhood=cfg.prc_neighborhood,
        cache_root=cfg.cache_dir, verbose=False, save_cpu_ram=True, **device_kwargs,
    )
    try:
        raw = calculate_metrics(**kwargs)
    except UserError:
        raise
    except ValueError as err:  # torch-fidelity's vassert: something the user controls
        raise UserError(f"torch-fidelity: {err}") from None
    protocol = EvalProtocol(
        extractor=spec.extractor, extractor_weights_sha256=spec.weights_sha256, n_samples=n,
        seed=cfg.seed, reference_split=cfg.reference_split, reference_n=len(reference),
        reference_md5=prepared_md5(dataset), resize=spec.resize(dataset.resolution),
        isc_splits=cfg.isc_splits, kid_subsets=cfg.kid_subsets, kid_subset_size=kid_subset_size,
        prc_neighborhood=cfg.prc_neighborhood, torch_fidelity=_fidelity_version(),
        extractor_test_accuracy=spec.test_accuracy,
    )
    short = FEATURE_EXTRACTORS.get(spec.extractor).short
    return EvalResult(name_fidelity_results(raw, short), protocol, raw=raw)


def _fidelity_version() -> str:
    from torch_fidelity.version import __version__

    return __version__


def evaluate_generator(generator: nn.Module, z_dim: int, dataset: PreparedDataset,
                       cfg: EvalConfig, out_dir: str | Path | None = None,
                       spec: ExtractorSpec | None = None) -> EvalResult:
    """The library call the pipeline makes: metrics (+ memorization check) of a generator.

    With ``out_dir``, writes ``eval.json`` and the closest-pairs PNG there.
    """
    spec = spec or resolve_extractor(cfg)
    generator = generator.eval()
    result = calculate(generator, dataset, cfg, spec, z_dim=z_dim)
    if cfg.memorization:
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
    spec = resolve_extractor(config.eval)  # before loading anything: fail fast
    dataset = open_prepared(config.data.prepared_dir)
    generator, info = load_generator(checkpoint)
    if (info["channels"], info["resolution"]) != (dataset.channels, dataset.resolution):
        raise UserError(
            f"--checkpoint {checkpoint}: makes {info['channels']}×{info['resolution']}² images "
            f"but {config.data.prepared_dir} holds {dataset.channels}×{dataset.resolution}²"
        )
    result = evaluate_generator(generator, info["z_dim"], dataset, config.eval, out_dir, spec)
    return result, info
