"""The configuration is described once, in the models: params.yaml's comments and
docs/reference/ are what pipelines/reference.py generates from them (and from the command
line's help), and what the models declare per key (stages, result) is what the code does.

That params.yaml's values are the models' defaults is tests/code/test_config.py's
test_repository_params_yaml_is_valid_and_matches_defaults.
"""

from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml

from ganpkg.config import Config, is_result_key
from ganpkg.config_fields import STAGES, Section, stages_of, subsection
from pipelines import reference


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return reference.render_all()


@pytest.mark.parametrize("path", [reference.PARAMS, reference.CONFIGURATION_MD,
                                  reference.COMMANDS_MD], ids=str)
def test_generated_file_is_what_the_sources_give(generated, path):
    assert path.is_file(), f"{path} missing: run `make reference`"
    assert path.read_text() == generated[path], (
        f"{path} differs from what the models and the command line's help give: edit "
        f"ganpkg/config_sections.py, config_eval.py or pipelines/cli/ (not the generated "
        f"file), then run `make reference`")


def keys() -> list[tuple[str, type[Section], str]]:
    """(dotted key, its section, its name) of every key that holds a value."""
    return [(prefix + key, section, key) for prefix, section in reference.walk()
            for key in section.model_fields if subsection(section, key) is None]


def test_every_key_has_a_description_and_known_stages():
    for prefix, section in reference.walk():
        assert (section.__doc__ or "").strip(), f"{section.__name__}: no docstring"
        for key, info in section.model_fields.items():
            assert info.description and info.description.strip(), f"{prefix}{key}: no description"
            stages = stages_of(section, key)
            assert stages, f"{prefix}{key}: no stage reads it"
            assert set(stages) <= set(STAGES), f"{prefix}{key}: unknown stage in {stages}"


# dvc.yaml leaves out a key its stage reads only where a dependency changes with it anyway:
# prepare reads data.torchvision_name back, but only to reopen the snapshot in data/ that
# ingest wrote with it (a dep of prepare).
NOT_LISTED = {"prepare": {"data.torchvision_name"}}


def test_dvc_stages_are_declared_as_reading_exactly_what_dvc_yaml_lists():
    stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        listed = spec.get("params", [])
        expanded = {key for key, _, _ in keys()
                    if any(key == p or key.startswith(f"{p}.") for p in listed)}
        declared = {key for key, section, name in keys() if stage in stages_of(section, name)}
        assert declared - NOT_LISTED.get(stage, set()) == expanded, stage


def _other_value(value: Any, annotation: Any) -> Any:
    """A value unlike ``value`` of the key's type (not validated: only hashed)."""
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if value is None:
        return {int: 7, float: 0.5}.get(annotation, "other")
    return f"{value}-other"


def _changed(config: Section, path: list[str]) -> Section:
    section, info = config, type(config).model_fields[path[0]]
    if len(path) == 1:
        return section.model_copy(update={path[0]: _other_value(getattr(section, path[0]),
                                                                info.annotation)})
    return section.model_copy(update={path[0]: _changed(getattr(section, path[0]), path[1:])})


def test_the_result_column_is_what_result_hash_does():
    """A key documented as changing the result changes result_hash (what on_change retrains
    on); one documented as not leaves it equal."""
    base = Config()
    wrong = []
    for key, _, _ in keys():
        hashed = _changed(base, key.split(".")).result_hash() != base.result_hash()
        if is_result_key(key) != hashed:
            wrong.append(f"{key}: documented {is_result_key(key)}, result_hash {hashed}")
    assert not wrong
    assert not is_result_key("train.run_dir") and is_result_key("train.lr_g")


def test_check_names_stale_files_and_writing_keeps_the_values(tmp_path, monkeypatch, capsys):
    repo_params = Path("params.yaml").read_text()
    edited = repo_params.replace("total_steps: 1500", "total_steps: 200", 1)
    edited = edited.replace("# D steps per G step", "# hand-written comment", 1)
    assert "total_steps: 200" in edited and "hand-written" in edited
    (tmp_path / "params.yaml").write_text(edited)
    monkeypatch.chdir(tmp_path)

    assert reference.main(["--check"]) == 1
    err = capsys.readouterr().err
    for path in (reference.PARAMS, reference.CONFIGURATION_MD, reference.COMMANDS_MD):
        assert f"{path}: out of date" in err
    assert not Path("docs").exists()  # --check writes nothing

    assert reference.main([]) == 0
    assert reference.main(["--check"]) == 0
    written = Path("params.yaml").read_text()
    assert yaml.safe_load(written)["train"]["total_steps"] == 200  # the user's value stays

    def others(text):
        return [line for line in text.splitlines() if not line.strip().startswith("total_steps:")]

    assert others(written) == others(repo_params)  # the generated comments are back


def test_an_invalid_params_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("train:\n  batch_sise: 3\n")
    monkeypatch.chdir(tmp_path)
    assert reference.main(["--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.batch_sise" in err and "\n" not in err
