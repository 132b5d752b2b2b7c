"""A throw-away project (git + DVC + tiny params) and one Prefect test server per session."""

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

TINY_PARAMS = {
    "name": "tiny",
    "data": {"source": "image_folder", "resolution": 32, "channels": 1},
    "model": {"z_dim": 16, "g_width": 8, "d_width": 8},
    "train": {"batch_size": 16, "total_steps": 12, "checkpoint_every_steps": 4,
              "sample_every_steps": 6, "log_every_steps": 2, "sample_grid_size": 16,
              "device": "cpu", "run_dir": "runs/tiny"},
    "eval": {"n_samples": 128, "progress_n_samples": 128, "batch_size": 64, "kid_subsets": 5, "kid_subset_size": 64,
             "isc_splits": 2, "memorization_n_samples": 64, "memorization_pairs": 4,
             "device": "cpu", "domain": {"epochs": 1, "width": 8, "feature_dim": 16},
             "selfsup": {"steps": 4, "batch_size": 32, "width": 8, "feature_dim": 16,
                         "projection_dim": 8, "prototypes": 4}},
    # Twelve steps of a width-8 model are no better than initialization: the first-champion
    # rule (tests/registry) would keep every tiny version a challenger.
    "registry": {"max_memorized_fraction": 1.0, "first_champion_fraction": None},
}


def blob_images(folder: Path, n: int = 96, labeled: bool = True) -> None:
    """Two classes of blurred blobs (left/right), enough for the domain classifier to learn;
    ``labeled=False``: the same images in one flat folder (no labels)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 32
    for i in range(n):
        side = i % 2
        cx, cy = 0.25 + 0.5 * side + rng.normal(0, 0.05), rng.uniform(0.2, 0.8)
        img = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 30) * 255
        name = f"{i:03d}.png"
        path = folder / ("left" if side == 0 else "right") / name if labeled else folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(path)


def write_params(project: Path, **sections) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's temporary local server, once per test session, with its own PREFECT_HOME."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def make_project(tmp_path: Path, labeled: bool = True) -> Path:
    """A git + DVC project in TMP_PATH/project with this checkout's dvc.yaml, tiny params, a small
    image folder (TMP_PATH/images) and its raw snapshot ingested and recorded in data.dvc.

    Changes no process state (the working directory is restored): tests that need no Prefect
    test server (tests/stack) build their project with it too.
    """
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "-q"], cwd=root, check=True)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for package in ("ganpkg",):  # stages depend on code paths; copies stand in for them
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    blob_images(tmp_path / "images", labeled=labeled)
    params = yaml.safe_load(yaml.safe_dump(TINY_PARAMS))
    params["data"]["source_path"] = str(tmp_path / "images")
    from ganpkg.config import load_config

    full = load_config(REPO / "params.yaml").model_dump(mode="json")
    for section, values in params.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, dict):
                    full[section][key].update(value)
                else:
                    full[section][key] = value
        else:
            full[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    # The project's committed snapshot: ingest once and record data.dvc, as a user would.
    from ganpkg.data.ingest import ingest
    from pipelines.data import verify_raw_snapshot

    with contextlib.chdir(root):
        ingest(load_config(root / "params.yaml").data)
        verify_raw_snapshot(root, accept_new=True)
    return root


@pytest.fixture
def project(tmp_path, monkeypatch, prefect_server):
    """make_project's project as the working directory, with a sqlite MLflow store inside it."""
    return enter_project(make_project(tmp_path), monkeypatch)


def enter_project(root: Path, monkeypatch) -> Path:
    """Work in `root`, with a sqlite MLflow store inside it and this venv's dvc on PATH."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return root
