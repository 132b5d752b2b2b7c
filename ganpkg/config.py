"""params.yaml → one validated pydantic model per stage.

Every section refuses unknown keys and carries its constraints in the types, so a typo or an
out-of-range value fails before any work, with one line naming the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ganpkg import metrics
from ganpkg.errors import UserError
from ganpkg.registry import ARCHITECTURES, DATA_SOURCES, FEATURE_EXTRACTORS, LOSSES, Registry


def registered(registry: Registry) -> Any:
    """A ``str`` field whose value must name an entry of ``registry`` (checked at load time, so
    entries registered by outside code before loading are accepted too)."""
    return Annotated[str, AfterValidator(registry.check)]


AUTO_EXTRACTOR = "auto"


def extractor_for(labeled: bool) -> str:
    """What ``eval.extractor: auto`` means for data that is labeled or not: the classifier
    where every image has a label, since it ranks generators and sees dropped classes best
    (benchmarks/yardstick.py), else the label-free encoder."""
    return "domain" if labeled else "selfsup"


def _extractor_choice(name: str) -> str:
    """``auto`` or a registered extractor."""
    return name if name == AUTO_EXTRACTOR else FEATURE_EXTRACTORS.check(name)


def _gate_metric(name: str) -> str:
    if name in metrics.METRICS and metrics.METRICS.get(name).gateable:
        return name  # a bare stem: measured on whichever extractor eval.extractor resolves to
    parsed = metrics.parse(name)
    if parsed is None or parsed.qualifier is not None or not parsed.metric.gateable:
        stems = [m for m in metrics.METRICS.names() if metrics.METRICS.get(m).gateable]
        shorts = sorted(metrics.extractor_short_names().values())
        raise ValueError(f"{name!r} is not a gate metric; expected <{'|'.join(stems)}>_"
                         f"<{'|'.join(shorts)}>")
    return name


class Section(BaseModel):
    """Base of every params.yaml section: strict keys, validated on assignment too."""

    # allow_inf_nan=False: an infinite learning rate or a NaN margin is a typo, not a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)


class DataConfig(Section):
    """Stage `ingest` and `prepare`: where images come from and the prepared shape."""

    source: registered(DATA_SOURCES) = "mnist"
    source_path: str | None = Field(
        default=None, description="image_folder: the folder to read; torchvision: its root"
    )
    torchvision_name: str | None = Field(default=None, description="e.g. CIFAR10, FashionMNIST")
    split: Literal["train", "test", "all"] = "train"
    raw_dir: str = "data"
    prepared_dir: str = "prepared"
    resolution: Literal[32, 64, 128] = 32
    channels: Literal[1, 3] = 1
    max_images: int | None = Field(default=None, gt=0)
    strict: bool = False


class ModelConfig(Section):
    """Networks; resolution and channels come from the prepared data's manifest."""

    arch: registered(ARCHITECTURES) = "dcgan"
    z_dim: int = Field(default=100, gt=0)
    # 32 keeps the default CPU run to minutes; the seed's 64 is the GPU profile's (profiles/).
    g_width: int = Field(default=32, gt=0, description="generator channels at full resolution")
    d_width: int = Field(default=32, gt=0, description="discriminator channels at full resolution")
    g_norm: Literal["batch", "none"] = "batch"
    d_norm: Literal["batch", "none"] = "batch"
    spectral_norm: bool = False


class TrainConfig(Section):
    """Optimisation, schedule of checkpoints/samples, device and divergence guard."""

    loss: registered(LOSSES) = "bce"
    n_critic: int = Field(default=1, ge=1, description="D steps per G step")
    gp_weight: float = Field(default=10.0, ge=0)
    batch_size: int = Field(default=64, gt=0)
    total_steps: int = Field(default=1500, gt=0, description="generator steps")
    lr_g: float = Field(default=1e-3, gt=0)
    lr_d: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "linear"] = Field(
        default="constant",
        description="linear: both rates fall linearly to 0 at total_steps (on MNIST it lost "
                    "to constant, benchmarks/recipe_variants.py; total_steps then joins the "
                    "keys a resume must keep)",
    )
    beta1: float = Field(default=0.3, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    ema_start_step: int = Field(default=0, ge=0)
    r1_gamma: float = Field(default=1.0, ge=0, description="R1 penalty on real images (0 = off)")
    r1_every: int = Field(default=16, ge=1, description="lazy R1: every this many steps")
    seed: int = Field(default=0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nproc_per_node: int = Field(
        default=1, ge=1, description="processes (GPUs) on this node; >1 launches torchrun"
    )
    bf16: bool = Field(default=True, description="bf16 autocast on CUDA; ignored on CPU")
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = True
    data_on_device: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="copy the prepared images to the training device once and draw batches "
                    "there (same images, same order): auto = on CUDA when they take at most a "
                    "quarter of its free memory; never = read each batch from the memmap",
    )
    run_dir: str = "runs/default"
    checkpoint_every_steps: int = Field(default=250, gt=0)
    keep_checkpoints: int = Field(default=3, gt=0)
    sample_every_steps: int = Field(default=250, gt=0)
    sample_grid_size: int = Field(default=64, gt=0)
    log_every_steps: int = Field(default=50, gt=0)
    max_abs_loss: float = Field(default=1e4, gt=0, description="a loss beyond this diverged")
    collapse_d_loss: float = Field(
        default=1e-4, ge=0, description="D loss below this for collapse_patience steps = collapsed"
    )
    collapse_patience: int = Field(default=200, gt=0)
    eval_every_steps: int | None = Field(
        default=None, gt=0,
        description="the FID curve's cadence (eval.progress_n_samples): none = at every "
                    "checkpoint; a multiple of checkpoint_every_steps, so each point has a checkpoint",
    )
    max_seconds: float | None = Field(
        default=None, gt=0,
        description="a wall-clock budget for training (its resumptions together): stops with a "
                    "checkpoint once spent; total_steps stays the reproducible budget",
    )

    @model_validator(mode="after")
    def _eval_on_checkpoints(self) -> TrainConfig:
        if self.eval_every_steps and self.eval_every_steps % self.checkpoint_every_steps:
            raise ValueError(f"train.eval_every_steps ({self.eval_every_steps}) must be a multiple "
                             f"of train.checkpoint_every_steps ({self.checkpoint_every_steps})")
        return self


class DomainExtractorConfig(Section):
    """Stage `train_extractor`: the small classifier on the prepared labels used as extractor."""

    weights: str = Field(default="extractor/domain.pt", description="where the stage writes it")
    report: str = Field(default="extractor/domain.json", description="its test accuracy (metrics)")
    width: int = Field(default=32, gt=0, description="channels of the first conv layer")
    feature_dim: int = Field(default=128, gt=1, description="features FID/KID/PR are computed on")
    epochs: int = Field(default=2, gt=0)
    batch_size: int = Field(default=128, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    seed: int = Field(default=0, ge=0)


class SelfSupExtractorConfig(Section):
    """Stage `train_selfsup`: the label-free extractor (contrastive, on the prepared images
    without their labels), the default yardstick for any folder of images."""

    weights: str = Field(default="extractor/selfsup.pt", description="where the stage writes it")
    report: str = Field(default="extractor/selfsup.json", description="its held-out view scores")
    width: int = Field(default=16, gt=0, description="channels of the first conv layer")
    feature_dim: int = Field(default=128, gt=1, description="features FID/KID/PR are computed on")
    projection_dim: int = Field(default=64, gt=1, description="NT-Xent's projection (discarded)")
    prototypes: int = Field(default=16, gt=1, description="k-means centres: IS's classes")
    steps: int = Field(default=200, gt=0, description="optimizer steps (batch_size images each)")
    batch_size: int = Field(default=128, gt=1, description="NT-Xent's negatives: 2×batch−2")
    lr: float = Field(default=2e-3, gt=0)
    temperature: float = Field(default=0.2, gt=0, description="NT-Xent's softmax temperature")
    min_crop_area: float = Field(default=0.6, gt=0, le=1, description="crops: area fraction")
    max_shift: float = Field(default=0.1, ge=0, lt=1, description="translations: side fraction")
    flip: bool = Field(
        default=False,
        description="mirror views: off, or mirrored digits and text would score as real",
    )
    seed: int = Field(default=0, ge=0)


class EvalConfig(Section):
    """Evaluation protocol (torch-fidelity): what is measured, on what, against which reference."""

    extractor: Annotated[str, AfterValidator(_extractor_choice)] = Field(
        default=AUTO_EXTRACTOR,
        description="auto: the label classifier (domain) where every prepared image has a "
                    "label, else the label-free encoder (selfsup); or a registered name",
    )
    inception_weights: str | None = Field(
        default=None, description="local copy of torch-fidelity's Inception weights (offline)"
    )
    inception_weights_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8,64}$",
        description="expected sha256 (or its prefix); null = the prefix in torch-fidelity's URL",
    )
    domain: DomainExtractorConfig = DomainExtractorConfig()
    selfsup: SelfSupExtractorConfig = SelfSupExtractorConfig()
    n_samples: int = Field(default=10_000, gt=1)
    batch_size: int = Field(default=200, gt=0)
    seed: int = Field(default=0, ge=0)
    fid: bool = True
    isc: bool = True
    kid: bool = True
    prc: bool = False
    reference_split: Literal["all", "train", "holdout"] = "train"
    holdout_fraction: float = Field(
        default=0.1667, gt=0, lt=1,
        description="prepared images held out: the extractor's test accuracy and the floor",
    )
    reference_max_images: int | None = Field(default=None, gt=1)
    isc_splits: int = Field(default=10, gt=0)
    kid_subsets: int = Field(default=100, gt=0)
    kid_subset_size: int = Field(default=1000, gt=1, description="capped at n and reference size")
    prc_neighborhood: int = Field(default=3, gt=0)
    cache_dir: str = Field(default=".cache/fidelity", description="reference features/statistics")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memorization: bool = True
    memorization_n_samples: int = Field(default=1000, gt=0)
    memorization_quantile: float = Field(
        default=0.01, gt=0, lt=0.5,
        description="memorized = closer to a training image than this quantile of real-to-real "
                    "nearest-neighbour distances (fresh samples are flagged at about this rate)",
    )
    memorization_pairs: int = Field(default=16, gt=0, description="closest pairs in the PNG")
    progress_n_samples: int = Field(
        default=2000, ge=0,
        description="samples of the FID curve during training (0 = none): the primary metric "
                    "and its se at each train.eval_every_steps, no floor, baseline or memorization",
    )
    bootstrap_resamples: int = Field(
        default=50, ge=0,
        description="resamples of the generated features for each metric's standard error "
                    "(<metric>_se, _ci_low, _ci_high); 0 = none",
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="level of _ci_low/_ci_high")
    floor: bool = Field(
        default=True,
        description="also measure real held-out images against the reference (<metric>_floor)",
    )
    baseline: bool = Field(
        default=True,
        description="also measure the checkpoint's generator at initialization "
                    "(<metric>_baseline), what a first champion must clearly beat",
    )

    @model_validator(mode="after")
    def _any_metric(self) -> EvalConfig:
        if not (self.fid or self.isc or self.kid or self.prc):
            raise ValueError("eval: enable at least one of fid, isc, kid, prc")
        if self.isc and self.isc_splits > self.n_samples:
            # torch-fidelity would report NaN for empty splits, measured as if it were a score
            raise ValueError(f"eval.isc_splits ({self.isc_splits}) must be at most "
                             f"eval.n_samples ({self.n_samples})")
        return self


class RegistryConfig(Section):
    """MLflow model registry and the promotion gate."""

    model_name: str = Field(default="ganpkg-generator", pattern=r"^[A-Za-z0-9_.-]+$")
    primary_metric: Annotated[str, AfterValidator(_gate_metric)] = Field(
        default="fid",
        description="metric the gate compares: <stem>_<extractor> (ganpkg/metrics.py), or a "
                    "bare stem (fid) for that stem on the extractor eval.extractor resolves to",
    )
    margin: float = Field(
        default=0.0, ge=0,
        description="a new champion must beat the current one by more than this (metric units)",
    )
    first_champion_threshold: float | None = Field(
        default=None,
        description="a first version becomes champion only if its primary metric is at least "
                    "this good (<= for fid/kid, >= for is/precision/recall); null = any value",
    )
    max_memorized_fraction: float = Field(default=0.05, ge=0, le=1)
    confidence: float = Field(
        default=0.95, gt=0, lt=1,
        description="a new champion's interval at this level must clear the champion's "
                    "(both from the evaluation's standard errors), plus margin",
    )
    first_champion_fraction: float | None = Field(
        default=0.3, ge=0, le=1,
        description="a first version must close this fraction of the distance from its "
                    "baseline (the generator at initialization) to the floor (real vs real), "
                    "on a log scale; null = off",
    )

    @property
    def lower_is_better(self) -> bool:
        """Direction of the primary metric (fid/kid: lower; is/precision/recall: higher)."""
        return metrics.lower_is_better(self.primary_metric)


class ScheduleConfig(Section):
    """Scheduled retraining."""

    cron: str = "0 3 * * 1"
    policy: Literal["always", "on_change"] = "on_change"


class Config(Section):
    """The whole params.yaml."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    registry: RegistryConfig = RegistryConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.data.source == "image_folder" and not self.data.source_path:
            raise ValueError("data.source_path is required when data.source is image_folder")
        if self.data.source == "torchvision" and not self.data.torchvision_name:
            raise ValueError("data.torchvision_name is required when data.source is torchvision")
        return self

    def check_gate_metric(self) -> None:
        """Refuse (UserError) a registry.primary_metric that this evaluation will not produce.

        Checked where a flow will gate, not at load: `ganpkg evaluate --set eval.extractor=…`
        needs no gate metric.
        """
        enabled = {flag: getattr(self.eval, flag) for flag in ("fid", "isc", "kid", "prc",
                                                               "memorization")}
        name, extractor = self.registry.primary_metric, self.eval.extractor
        if extractor == AUTO_EXTRACTOR or name in metrics.METRICS:
            stem = name if name in metrics.METRICS else metrics.parse(name).metric.stem
            if extractor == AUTO_EXTRACTOR:  # checked again once the data names the extractor
                flag = metrics.METRICS.get(stem).flag
                if not enabled.get(flag, False):
                    raise UserError(f"registry.primary_metric {name} needs eval.{flag}=true")
                return
            name = metrics.metric_name(stem, metrics.extractor_short_names()[extractor])
        try:
            metrics.check_primary_metric(name, extractor, enabled)
        except ValueError as err:
            raise UserError(f"registry.primary_metric {err}") from None

    def with_extractor_for(self, labeled: bool) -> Config:
        """``eval.extractor: auto`` and a bare ``registry.primary_metric`` made concrete for data
        that is labeled or not (in place; returns self; see ``extractor_for``)."""
        if self.eval.extractor == AUTO_EXTRACTOR:
            self.eval.extractor = extractor_for(labeled)
        stem = self.registry.primary_metric
        if stem in metrics.METRICS:
            short = metrics.extractor_short_names()[self.eval.extractor]
            self.registry.primary_metric = metrics.metric_name(stem, short)
        return self

    def params_hash(self) -> str:
        """sha256 of the canonical JSON of the config (lineage tag).

        train.run_dir is left out: each flow run trains in a folder of its own, and where a
        run is written does not change what it computes.
        """
        return self._hash(drop_seed=False)

    def recipe_hash(self) -> str:
        """params_hash without train.seed: runs of one recipe under different seeds share it,
        so their spread (the real variation between trainings) can be measured."""
        return self._hash(drop_seed=True)

    def result_keys(self) -> dict[str, Any]:
        """The flattened keys (``train.lr_g``) that change the trained generator or the figures
        reported for it: what retraining on change compares (see NOT_RESULT)."""
        body = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for section, values in body.items():
            if not isinstance(values, dict) or NOT_RESULT.get(section, set()) is None:
                continue
            for key, value in flatten(values, f"{section}.").items():
                if key.split(".", 2)[1] not in NOT_RESULT.get(section, set()):
                    out[key] = value
        return out

    def result_hash(self) -> str:
        """sha256 of result_keys(): equal for configs that would train the same generator and
        report the same figures, whatever their schedule, gate or output paths."""
        canonical = json.dumps(self.result_keys(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _hash(self, drop_seed: bool) -> str:
        body = self.model_dump(mode="json")
        body["train"].pop("run_dir")
        if drop_seed:
            body["train"].pop("seed")
        canonical = json.dumps(body, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# What changes where or how often a run writes, how it is gated or scheduled, but not the
# generator it trains nor the figures it reports (grids use their own fixed noise, the
# evaluation batch size only splits the same work): None drops the whole section.
NOT_RESULT: dict[str, set[str] | None] = {
    "registry": None,
    "schedule": None,
    "data": {"raw_dir", "prepared_dir"},
    "train": {"run_dir", "checkpoint_every_steps", "keep_checkpoints", "sample_every_steps",
              "sample_grid_size", "log_every_steps", "data_on_device"},
    "eval": {"batch_size", "cache_dir", "device", "memorization_pairs"},
}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'seed': 0}} → {'train.seed': 0} (MLflow params, result keys)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _format_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section = first["loc"][:-1]
        model: Any = Config
        for part in section:
            model = model.model_fields[str(part)].annotation
        allowed = ", ".join(sorted(model.model_fields))
        msg = f"unknown key; allowed here: {allowed}"
    elif first["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    # Checks across sections name their keys themselves.
    return f"{origin}: {key}: {msg}{tail}" if key else f"{origin}: {msg}{tail}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` → (['section', 'key'], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected section.key=value, e.g. train.total_steps=100")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {text!r}: expected section.key=value, e.g. train.total_steps=100")
    return parts, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the raw params with every `section.key=value` applied."""
    merged = json.loads(json.dumps(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node = merged
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {text!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return merged


def config_from_dict(raw: dict[str, Any], origin: str = "params") -> Config:
    """Validate a raw mapping; bad input becomes one UserError line naming the key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(err, origin)) from None


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (PyYAML keeps
    the last silently, so one of the two values a user wrote would be ignored)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice (line {key_node.start_mark.line + 1}); "
                                    f"keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None = "params.yaml", overrides: list[str] = ()) -> Config:
    """Read params.yaml (absent path → embedded defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
        except _DuplicateKey as err:
            raise UserError(f"{path}: {err}") from None
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
        if raw is None:
            raise UserError(f"{path}: empty; give at least one section (data, model, train, "
                            f"eval, registry, schedule), or pass no file for the defaults")
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of sections at the top level")
        origin = str(path)
    return config_from_dict(apply_overrides(raw, list(overrides)), origin)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what ran, not what was asked for)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
