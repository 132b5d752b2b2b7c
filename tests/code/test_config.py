"""params.yaml validation: bad input fails before any work, with one line naming the key."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganpkg.config import Config, load_config, save_config
from ganpkg.errors import UserError


def write(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_yaml_is_valid_and_matches_defaults():
    config = load_config("params.yaml")
    assert config == Config()


@pytest.mark.parametrize("profile", sorted(Path("profiles").glob("*.yaml")), ids=str)
def test_every_profile_is_a_complete_params_file(profile):
    """A profile is used as params.yaml (DVC's stages read it): it validates, and every key that
    dvc.yaml templates (${eval.selfsup.weights}, ...) is written in it, not left to a default."""
    load_config(profile)
    raw = yaml.safe_load(profile.read_text())
    for key in set(re.findall(r"\$\{([a-z_.]+)\}", Path("dvc.yaml").read_text())):
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{profile}: {key} missing"
            node = node[part]


def test_unknown_key_names_key_and_allowed_keys(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, {"train": {"batch_sise": 32}}))
    msg = str(err.value)
    assert "train.batch_sise" in msg and "batch_size" in msg and "\n" not in msg


def test_wrong_type_and_out_of_range(tmp_path):
    with pytest.raises(UserError, match=r"train\.total_steps"):
        load_config(write(tmp_path, {"train": {"total_steps": "many"}}))
    with pytest.raises(UserError, match=r"train\.batch_size.*greater than 0"):
        load_config(write(tmp_path, {"train": {"batch_size": 0}}))
    with pytest.raises(UserError, match=r"data\.resolution.*32.*64.*128"):
        load_config(write(tmp_path, {"data": {"resolution": 48}}))


def test_cross_field_check(tmp_path):
    with pytest.raises(UserError, match="source_path"):
        load_config(write(tmp_path, {"data": {"source": "image_folder"}}))


def test_overrides_apply_and_parse_yaml_scalars():
    config = load_config(None, ["train.total_steps=7", "model.spectral_norm=true",
                                "train.lr_g=3e-3"])
    assert config.train.total_steps == 7 and config.model.spectral_norm is True
    assert config.train.lr_g == pytest.approx(3e-3)
    with pytest.raises(UserError, match="section.key=value"):
        load_config(None, ["train.total_steps"])
    with pytest.raises(UserError, match="train.nope"):
        load_config(None, ["train.nope=1"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_saved_config_round_trips_and_hash_tracks_changes(tmp_path):
    config = load_config(None, ["train.seed=3"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert config.params_hash() != load_config(None, ["train.seed=4"]).params_hash()


def test_cli_prints_one_line_and_exits_2(tmp_path):
    path = write(tmp_path, {"train": {"batch_size": -1}})
    proc = subprocess.run([sys.executable, "-m", "pipelines", "train", "-c", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "train.batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("train:\n  lr_g: 0.1\n  lr_g: 0.2\n", "key 'lr_g' appears twice (line 3)"),
    ("train:\n  lr_g: .inf\n", "train.lr_g: Input should be a finite number"),
    ("registry:\n  margin: .nan\n", "registry.margin: Input should be a finite number"),
])
def test_params_files_that_would_be_silently_wrong_are_refused(tmp_path, text, needle):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_infinite_override_is_refused_too():
    with pytest.raises(UserError, match="train.lr_d: Input should be a finite number"):
        load_config(None, ["train.lr_d=inf"])


def test_serve_refuses_a_cron_that_is_not_one():
    from pipelines.cli.flow import check_cron

    check_cron("0 3 * * 1")
    with pytest.raises(UserError, match='schedule.cron: Invalid cron string: "every monday"'):
        check_cron("every monday")


def test_more_inception_score_splits_than_samples_is_refused_at_load(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, {"eval": {"n_samples": 8, "isc_splits": 10}}))
    assert "eval.isc_splits" in str(err.value) and "\n" not in str(err.value)
