"""How a params.yaml key is declared: its description, the stages that read it, and whether it
changes the result, all beside its type, so the models are the one description of the
configuration (docs/reference/configuration.md and params.yaml's comments are generated from
them by ``python -m pipelines.reference``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ganpkg.registry import Registry

# What reads params.yaml, by the names dvc.yaml and the retrain flow give it. A key names the
# stages that read it (``stages``); tests check the DVC ones against dvc.yaml's params lists.
STAGES: dict[str, str] = {
    "run": "the retrain flow itself (`ganpkg run`): names, retrain policy",
    "ingest": "`ganpkg data ingest`: the source copied into data/ (tracked by data.dvc)",
    "prepare": "DVC stage prepare: data/ decoded and resized into the prepared images",
    "train_selfsup": "DVC stage train_selfsup: the label-free feature extractor",
    "train_extractor": "DVC stage train_extractor: the label classifier used as extractor",
    "train": "training (the flow's train task, `ganpkg train`), with its FID curve",
    "evaluate": "evaluation (the flow's evaluate task, `ganpkg evaluate`)",
    "register": "MLflow model registration",
    "gate": "the promotion gate: @champion or @challenger",
    "serve": "`ganpkg serve`: the scheduled deployment",
}


@dataclass(frozen=True)
class Allowed:
    """``Annotated`` marker of a value a validator checks: ``choices()`` lists which values pass
    (for the generated reference; pydantic ignores the marker)."""

    choices: Callable[[], list[str]]


def registered(registry: Registry) -> Any:
    """A ``str`` field whose value must name an entry of ``registry`` (checked at load time, so
    entries registered by outside code before loading are accepted too)."""
    return Annotated[str, AfterValidator(registry.check),
                     Allowed(registry.names)]


def setting(default: Any, description: str, *, stages: tuple[str, ...] | None = None,
            result: bool | None = None, **constraints: Any) -> Any:
    """A ``Field`` with its description and, where they differ from its section's, the stages
    that read it and whether a change of it changes the result (see ``Section``)."""
    extra: dict[str, Any] = {}
    if stages is not None:
        extra["stages"] = list(stages)
    if result is not None:
        extra["result"] = result
    return Field(default=default, description=description, json_schema_extra=extra or None,
                 **constraints)


class Section(BaseModel):
    """Base of every params.yaml section: strict keys, validated on assignment too.

    ``section_stages`` and ``section_result`` are what its keys declare unless a key says
    otherwise: the stages that read them, and whether they change the result, i.e. the trained
    generator or the figures reported for it (``Config.result_keys``: what retraining on change
    compares; where or how often a run writes, how it is gated or scheduled, do not).
    """

    # allow_inf_nan=False: an infinite learning rate or a NaN margin is a typo, not a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)

    section_stages: ClassVar[tuple[str, ...]] = ()
    section_result: ClassVar[bool] = True


def _extra(section: type[Section], key: str) -> dict[str, Any]:
    extra = section.model_fields[key].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def stages_of(section: type[Section], key: str) -> tuple[str, ...]:
    """The stages that read ``section``'s ``key``."""
    stages = _extra(section, key).get("stages")
    return tuple(stages) if stages is not None else section.section_stages


def changes_result(section: type[Section], key: str) -> bool:
    """Whether a change of ``section``'s ``key`` changes the result (see ``Section``)."""
    result = _extra(section, key).get("result")
    return section.section_result if result is None else bool(result)


def subsection(section: type[Section], key: str) -> type[Section] | None:
    """The section class of ``key`` where it is a nested section (eval.domain), else None."""
    annotation = section.model_fields[key].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None
