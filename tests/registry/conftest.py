"""Fixtures: throwaway MLflow stores in tmp folders and one tracked, evaluated, registered run.

Creating MLflow's sqlite schema takes seconds, so it is done once per session and the empty
database file is copied for each store. Nothing here touches the repository's mlflow.db.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from tests

from registry_helpers import METRICS, PROTOCOL, TINY, make_prepared
from ui_helpers import CHROMIUM

from ganpkg.config import Config, load_config


@pytest.fixture(scope="session", autouse=True)
def stray_store(tmp_path_factory):
    """Code that falls back to MLflow's global URI lands here, never in the repo's mlflow.db."""
    repo_db = Path(__file__).parents[2] / "mlflow.db"
    existed = repo_db.exists()
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    stray = tmp_path_factory.mktemp("stray") / "mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{stray}"
    yield stray
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    assert existed or not repo_db.exists(), "a test wrote the repository's mlflow.db"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty MLflow sqlite database (copied by each store)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def new_store(folder: Path, empty_store: Path) -> str:
    """A fresh tracking URI in ``folder`` (artifacts go to folder/mlartifacts)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store) -> str:
    """A fresh store, also set as $MLFLOW_TRACKING_URI for code that reads the default."""
    uri = new_store(tmp_path / "store", empty_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@dataclass
class Registered:
    uri: str
    root: Path
    config: Config
    run_id: str
    checkpoint: Path
    version: str
    overrides: list


@pytest.fixture(scope="session")
def registered_store(tmp_path_factory, empty_store) -> tuple[Path, str]:
    """(folder, tracking URI) of the store the registered run lives in."""
    root = tmp_path_factory.mktemp("registered")
    return root, new_store(root / "store", empty_store)


@pytest.fixture(scope="session", autouse=True)
def ui_server(registered_store):
    """`mlflow server` over the registered store, started first so that its slow boot overlaps
    the other tests (test_view_ui waits for it); None without Chromium. Stopped by its group id."""
    from ui_helpers import start_server, stop_server

    root, uri = registered_store
    if not CHROMIUM:
        yield None
        return
    server, base = start_server(uri, root / "server.log")
    yield base, server, root / "server.log"
    stop_server(server)


@pytest.fixture(scope="session")
def registered(registered_store) -> Registered:
    """Tiny training tracked to MLflow with its FID curve (a point at each of the 4
    checkpoints, on a tiny domain extractor), evaluation logged (METRICS), version registered."""
    from ganpkg.data.prepared import open_prepared
    from ganpkg.evaluation.extractor_domain import train_domain_extractor
    from ganpkg.evaluation.progress import progress_callbacks
    from ganpkg.training import train
    from pipelines.eval_record import log_evaluation
    from pipelines.registration import register_run
    from pipelines.tracking import MlflowTracker

    root, uri = registered_store
    prepared = make_prepared(root / "prepared")
    overrides = TINY + [f"data.prepared_dir={prepared}", f"train.run_dir={root / 'run'}",
                        "eval.extractor=domain", "registry.primary_metric=fid_domain",
                        "train.checkpoint_every_steps=3", "eval.progress_n_samples=64",
                        f"eval.domain.weights={root / 'domain.pt'}",
                        f"eval.domain.report={root / 'domain.json'}"]
    config = load_config(None, overrides)
    train_domain_extractor(open_prepared(prepared), config.eval, device="cpu")
    tracker = MlflowTracker(config, tracking_uri=uri, flow_run_id="flow-run-42",
                            repo=Path(__file__).parents[2], system_metrics=False)
    result = train(config, [tracker, *progress_callbacks(config, [tracker])])
    log_evaluation(tracker.run_id, METRICS, PROTOCOL, step=result.step, tracking_uri=uri)
    reg = register_run(tracker.run_id, result.checkpoint, METRICS, PROTOCOL, config,
                       tracking_uri=uri)
    return Registered(uri, root, config, tracker.run_id, result.checkpoint, reg.version, overrides)
