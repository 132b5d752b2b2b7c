"""params.yaml → one validated pydantic model per stage.

Every section refuses unknown keys and carries its constraints in the types, so a typo or an
out-of-range value fails before any work, with one line naming the key and what is allowed.
Each key also carries its description, the stages that read it and whether it changes the
result (ganpkg/config_fields.py): the one description of the configuration, from which
``python -m pipelines.reference`` writes params.yaml's comments and docs/reference/.

The sections live in ganpkg/config_sections.py and ganpkg/config_eval.py; this module is the
entry point (``from ganpkg.config import Config, EvalConfig, load_config``): the whole file,
loading, overrides and hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from ganpkg import metrics
from ganpkg.config_eval import (
    AUTO_EXTRACTOR,
    DomainExtractorConfig,
    EvalConfig,
    SelfSupExtractorConfig,
    extractor_for,
)
from ganpkg.config_fields import Section, changes_result, registered, setting, subsection
from ganpkg.config_sections import (
    DataConfig,
    ModelConfig,
    RegistryConfig,
    ScheduleConfig,
    TrainConfig,
)
from ganpkg.errors import UserError

__all__ = [
    "AUTO_EXTRACTOR", "Config", "DataConfig", "DomainExtractorConfig", "EvalConfig",
    "ModelConfig", "RegistryConfig", "ScheduleConfig", "Section", "SelfSupExtractorConfig",
    "TrainConfig", "apply_overrides", "config_from_dict", "extractor_for", "flatten",
    "is_result_key", "load_config", "parse_override", "registered", "save_config",
]


class Config(Section):
    """The whole params.yaml."""

    section_stages = ("run",)

    name: str = setting("default", "names the MLflow experiment (ganpkg-<name>) and the folder "
                                   "of the flow's run directories", pattern=r"^[A-Za-z0-9_.-]+$",
                        result=False)
    data: DataConfig = setting(DataConfig(), "the images and their preparation",
                               stages=DataConfig.section_stages)
    model: ModelConfig = setting(ModelConfig(), "the networks", stages=ModelConfig.section_stages)
    train: TrainConfig = setting(TrainConfig(), "training", stages=TrainConfig.section_stages)
    eval: EvalConfig = setting(EvalConfig(), "evaluation", stages=EvalConfig.section_stages)
    registry: RegistryConfig = setting(RegistryConfig(), "registration and the gate",
                                       stages=RegistryConfig.section_stages, result=False)
    schedule: ScheduleConfig = setting(ScheduleConfig(), "scheduled retraining",
                                       stages=ScheduleConfig.section_stages, result=False)

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
        reported for it: what retraining on change compares (see ``is_result_key``)."""
        return {key: value for key, value in flatten(self.model_dump(mode="json")).items()
                if is_result_key(key)}

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


def is_result_key(key: str) -> bool:
    """Whether the flattened ``key`` (``train.lr_g``) changes the result: its field and every
    section around it declare so (``changes_result``). Where or how often a run writes, how it
    is gated or scheduled, do not."""
    section: type[Section] | None = Config
    for part in key.split("."):
        if section is None or part not in section.model_fields:
            return False
        if not changes_result(section, part):
            return False
        section = subsection(section, part)
    return True


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
