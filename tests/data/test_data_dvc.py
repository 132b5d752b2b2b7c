"""The DVC side, end to end in a throw-away repo: data.dvc, `dvc repro prepare`, lineage.

Runs the real dvc.yaml, .dvc/config and .dvcignore of this checkout against a small image
folder, with the `dvc` executable beside this Python (the stage's `python -m pipelines` too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from data_helpers import noise_png, write

from ganpkg.config import DataConfig, EvalConfig, load_config
from ganpkg.data.ingest import ingest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from pipelines.data import (
    DataLineageError,
    committed_data_md5,
    data_lineage,
    dir_md5,
    dvc_status,
    push,
    repro_prepare,
    run_dvc,
    verify_raw_snapshot,
)

pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("dvc").exists() or shutil.which("git") is None,
    reason="needs the dvc executable beside this Python, and git",
)


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.setdefault(section, {})[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def dvc_repo(tmp_path: Path, good_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    run_dvc(["init", "-q"], repo)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    # The data stage alone: the evaluation stages have tests of their own (tests/pipelines).
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages["stages"] = {"prepare": stages["stages"]["prepare"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    # The stage depends on the data code; a copy stands in for it (the cmd runs the real one).
    shutil.copytree(REPO / "ganpkg" / "data", repo / "ganpkg" / "data",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("/data/\n/prepared/\n/.dvc-remote/\n")
    # DVC needs every key dvc.yaml names (templated paths, tracked params) written out.
    data = DataConfig(source="image_folder", source_path=str(good_folder)).model_dump()
    (repo / "params.yaml").write_text(yaml.safe_dump(
        {"data": data, "train": {"batch_size": 64}, "eval": EvalConfig().model_dump()}))
    monkeypatch.chdir(repo)
    ingest(load_config("params.yaml").data)
    return repo


def test_repro_status_lineage_and_push(dvc_repo: Path):
    repo = dvc_repo
    assert not (repo / "data.dvc").exists()
    with pytest.raises(DataLineageError, match="data.dvc records None"):
        verify_raw_snapshot(repo)  # nothing committed yet: refuse unless asked
    md5 = verify_raw_snapshot(repo, accept_new=True)
    assert committed_data_md5(repo) == (md5, "data")  # our dir_md5 is DVC's

    out = repro_prepare(repo)
    assert "Running stage 'prepare'" in out, out
    images = repo / "prepared" / "images.npy"
    stamp = images.stat().st_mtime_ns
    lineage = data_lineage(repo, hash_workspace=True)
    assert lineage["workspace_clean"], lineage["dvc_status"]
    assert lineage["data_dvc_md5"] == lineage["data_workspace_md5"] == md5
    assert lineage["prepared_md5"] == lineage["prepared_workspace_md5"]
    assert lineage["prepare_params"]["data.resolution"] == 32
    assert set(lineage["prepare_params"]) == {f"data.{k}" for k in (
        "source", "split", "raw_dir", "prepared_dir", "resolution", "channels", "max_images",
        "strict")}

    out = repro_prepare(repo)  # a second repro is a no-op
    assert "Running stage" not in out and images.stat().st_mtime_ns == stamp, out

    set_param(repo, "train", "batch_size", 32)  # a key prepare does not read
    assert dvc_status(repo) == {}
    set_param(repo, "data", "resolution", 64)  # a key it reads
    status = dvc_status(repo)
    assert status["prepare"][0]["changed deps"]["params.yaml"] == {"data.resolution": "modified"}
    set_param(repo, "data", "resolution", 32)

    push(repo)
    assert dvc_status(repo) == {}
    cloud = run_dvc(["status", "--cloud"], repo).stdout
    assert "in sync" in cloud, cloud
    assert any((repo / ".dvc-remote").rglob("*.dir"))


def test_changed_snapshot_stops_before_repro(dvc_repo: Path):
    repo = dvc_repo
    committed = verify_raw_snapshot(repo, accept_new=True)
    before = (repo / "data.dvc").read_text()
    write(repo / "data" / "images" / "cat" / "new.png", noise_png(99))
    with pytest.raises(DataLineageError, match=f"data.dvc records {committed}"):
        verify_raw_snapshot(repo)
    verify = subprocess.run([sys.executable, "-m", "pipelines", "data", "verify"], cwd=repo,
                            capture_output=True, text=True, check=False)
    # what `make data` calls: a non-zero exit (2, a user error) stops it
    assert verify.returncode == 2, verify.stderr
    assert (repo / "data.dvc").read_text() == before  # nothing rewritten behind our back
    assert dir_md5(repo / "data") != committed
    assert data_lineage(repo)["data_changed"]
    os.remove(repo / "data" / "images" / "cat" / "new.png")
    assert verify_raw_snapshot(repo) == committed
