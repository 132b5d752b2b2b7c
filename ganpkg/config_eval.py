"""The evaluation sections of params.yaml: ``eval`` and its feature extractors (``eval.domain``,
``eval.selfsup``), each the input of its own DVC stage."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from ganpkg.config_fields import Allowed, Section, setting
from ganpkg.registry import FEATURE_EXTRACTORS

AUTO_EXTRACTOR = "auto"


def extractor_for(labeled: bool) -> str:
    """What ``eval.extractor: auto`` means for data that is labeled or not: the classifier
    where every image has a label, since it ranks generators and sees dropped classes best
    (benchmarks/yardstick.py), else the label-free encoder."""
    return "domain" if labeled else "selfsup"


def _extractor_choice(name: str) -> str:
    """``auto`` or a registered extractor."""
    return name if name == AUTO_EXTRACTOR else FEATURE_EXTRACTORS.check(name)


def _extractor_choices() -> list[str]:
    return [AUTO_EXTRACTOR, *FEATURE_EXTRACTORS.names()]


class DomainExtractorConfig(Section):
    """Stage `train_extractor`: the small classifier on the prepared labels used as extractor,
    once per data version."""

    section_stages = ("train_extractor",)

    weights: str = setting("extractor/domain.pt", "where the stage writes it (a DVC output)",
                           stages=("train_extractor", "evaluate"))
    report: str = setting("extractor/domain.json", "its test accuracy (dvc metrics)")
    width: int = setting(32, "channels of the first conv layer", gt=0)
    feature_dim: int = setting(128, "features FID/KID/PR are computed on", gt=1)
    epochs: int = setting(2, "passes over the prepared images less the held-out ones", gt=0)
    batch_size: int = setting(128, "images per optimizer step", gt=0)
    lr: float = setting(1e-3, "peak learning rate (Adam, one-cycle)", gt=0)
    seed: int = setting(0, "initialization and data order", ge=0)


class SelfSupExtractorConfig(Section):
    """Stage `train_selfsup`: the label-free extractor (contrastive, on the prepared images
    without their labels), the default yardstick for any folder of images."""

    section_stages = ("train_selfsup",)

    weights: str = setting("extractor/selfsup.pt", "where the stage writes it (a DVC output)",
                           stages=("train_selfsup", "evaluate"))
    report: str = setting("extractor/selfsup.json", "its held-out view scores (dvc metrics)")
    width: int = setting(16, "channels of the first conv layer", gt=0)
    feature_dim: int = setting(128, "features FID/KID/PR are computed on", gt=1)
    projection_dim: int = setting(64, "NT-Xent's projection head, discarded after training",
                                  gt=1)
    prototypes: int = setting(16, "k-means centres of the features: the classes is_selfsup is "
                                  "over", gt=1)
    steps: int = setting(200, "optimizer steps of batch_size images (two views each)", gt=0)
    batch_size: int = setting(128, "images per step; NT-Xent's negatives: 2×batch−2", gt=1)
    lr: float = setting(2e-3, "peak learning rate (Adam, one-cycle)", gt=0)
    temperature: float = setting(0.2, "NT-Xent's softmax temperature", gt=0)
    min_crop_area: float = setting(0.6, "views: square crops of this fraction of the area up "
                                        "to all of it", gt=0, le=1)
    max_shift: float = setting(0.1, "views: moved up to this fraction of the side; geometric "
                                    "only (no blur/noise/contrast)", ge=0, lt=1)
    flip: bool = setting(False, "mirrored views: off, or mirrored digits and text would score "
                                "as real")
    seed: int = setting(0, "initialization, data order and augmentations", ge=0)


class EvalConfig(Section):
    """Stage `evaluate` (torch-fidelity): what is measured, on what, against which reference;
    metrics are named by their extractor (fid_domain, fid_selfsup, ...)."""

    section_stages = ("evaluate",)

    extractor: Annotated[str, AfterValidator(_extractor_choice), Allowed(_extractor_choices)] = (
        setting(AUTO_EXTRACTOR,
                "auto: the label classifier (domain) where every prepared image has a label, "
                "else the label-free encoder (selfsup); inception-v3-compat needs its weights "
                "file offline", stages=("evaluate", "train")))
    inception_weights: str | None = setting(
        None, "local copy of torch-fidelity's Inception weights (offline machines)")
    inception_weights_sha256: str | None = setting(
        None, "expected sha256 (or its prefix) of inception_weights; null = the prefix in "
              "torch-fidelity's URL (6726825d)", pattern=r"^[0-9a-f]{8,64}$")
    selfsup: SelfSupExtractorConfig = setting(
        SelfSupExtractorConfig(), "the label-free extractor (DVC stage train_selfsup)",
        stages=("train_selfsup", "evaluate"))
    domain: DomainExtractorConfig = setting(
        DomainExtractorConfig(), "the label classifier (DVC stage train_extractor)",
        stages=("train_extractor", "evaluate"))
    n_samples: int = setting(10_000, "generated images per evaluation (50000 for the paper "
                                     "protocol)", gt=1)
    progress_n_samples: int = setting(
        2000, "samples per point of the FID curve during training (0 = none): the primary "
              "metric and its se at each train.eval_every_steps, no floor, baseline or "
              "memorization", ge=0, stages=("train",))
    batch_size: int = setting(200, "generated images per batch (splits the same work)", gt=0,
                              result=False)
    seed: int = setting(0, "seed of the generated samples: same seed, same samples, same "
                           "numbers", ge=0)
    fid: bool = setting(True, "measure FID (fid_<extractor>)")
    isc: bool = setting(True, "measure the Inception Score on the extractor (is_<extractor>)")
    kid: bool = setting(True, "measure KID (kid_<extractor>)")
    prc: bool = setting(False, "measure precision and recall (precision_/recall_/f_score_)")
    reference_split: Literal["all", "train", "holdout"] = setting(
        "train", "the real images compared with: all prepared images, the training part, or "
                 "the held-out part (images the extractors never saw)")
    holdout_fraction: float = setting(
        0.1667, "prepared images held out: the extractors' test images and the floor's real "
                "images (0.1667: 10002 of MNIST's 60000, as many as n_samples)", gt=0, lt=1,
        stages=("train_selfsup", "train_extractor", "evaluate"))
    reference_max_images: int | None = setting(
        None, "cap on the reference images, a fixed pick (null = the whole split)", gt=1)
    isc_splits: int = setting(10, "Inception Score splits (at most n_samples)", gt=0)
    kid_subsets: int = setting(100, "KID subsets", gt=0)
    kid_subset_size: int = setting(
        1000, "images per KID subset, capped at n_samples and the reference size (recorded in "
              "the protocol)", gt=1)
    prc_neighborhood: int = setting(3, "k of precision/recall's k-nearest-neighbour radii",
                                    gt=0)
    cache_dir: str = setting(".cache/fidelity", "reference features/statistics, keyed by data "
                                                "md5 + weights sha256", result=False)
    device: Literal["auto", "cpu", "cuda"] = setting(
        "auto", "where the extractor runs; auto = CUDA when present", result=False)
    memorization: bool = setting(True, "check generated samples for near-copies of training "
                                       "images (<metric>_memorized_fraction, for the gate)")
    memorization_n_samples: int = setting(1000, "generated samples the check looks at", gt=0)
    memorization_quantile: float = setting(
        0.01, "memorized = closer to a training image than this quantile of real-to-real "
              "nearest-neighbour distances (fresh samples are flagged at about this rate)",
        gt=0, lt=0.5)
    memorization_pairs: int = setting(16, "closest pairs saved as a PNG for review", gt=0,
                                      result=False)
    bootstrap_resamples: int = setting(
        50, "resamples of the generated features for each metric's standard error "
            "(<metric>_se, _ci_low, _ci_high); 0 = none", ge=0)
    confidence: float = setting(0.95, "level of <metric>_ci_low/_ci_high", gt=0, lt=1)
    floor: bool = setting(True, "also measure held-out real images against the reference "
                                "(<metric>_floor: the best reachable)")
    baseline: bool = setting(True, "also measure the checkpoint's generator at initialization "
                                   "(<metric>_baseline), what a first champion must clearly "
                                   "beat")

    @model_validator(mode="after")
    def _any_metric(self) -> EvalConfig:
        if not (self.fid or self.isc or self.kid or self.prc):
            raise ValueError("eval: enable at least one of fid, isc, kid, prc")
        if self.isc and self.isc_splits > self.n_samples:
            # torch-fidelity would report NaN for empty splits, measured as if it were a score
            raise ValueError(f"eval.isc_splits ({self.isc_splits}) must be at most "
                             f"eval.n_samples ({self.n_samples})")
        return self
