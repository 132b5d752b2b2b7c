"""Nothing loaded from the registry may execute: a pickle-format "generator" carrying a payload
is refused in one line by `ganpkg sample --model`, and the payload never runs."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature
from torch import nn

from pipelines.registry_load import using_tracking_uri


class Payload:
    """Unpickling this runs a shell command (what an attacker would register). It is armed only
    where GANPKG_TEST_ARMED is set (the sampling process), because MLflow itself reloads a
    pickle model while logging it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'test -n "$GANPKG_TEST_ARMED" && touch {self.marker}',)


def test_a_pickle_champion_is_refused_and_its_payload_never_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "payload-ran"
    model = nn.Sequential(nn.Linear(16, 32 * 32), nn.Tanh(), nn.Unflatten(1, (1, 32, 32)))
    model.payload = Payload(str(marker))
    signature = infer_signature(np.zeros((1, 16), np.float32), np.zeros((1, 1, 32, 32), np.float32))
    with using_tracking_uri(uri):
        mlflow.set_experiment("evil")
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                            signature=signature,
                                            registered_model_name="ganpkg-generator")
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        client.set_registered_model_alias("ganpkg-generator", "champion",
                                          info.registered_model_version)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "sample", "--model",
         "models:/ganpkg-generator@champion", "--n", "4", "--out", str(tmp_path / "grid.png")],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "COLUMNS": "200", "GANPKG_TEST_ARMED": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refused: not a pickle-free pt2 generator" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "grid.png").exists()
    _ = torch  # the model above is torch's
