"""The domain extractor is the yardstick: trained twice, in two processes with different thread
settings, it comes out byte for byte the same (so a fresh clone reproduces dvc.lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from ganpkg.files import hash_file


def test_two_processes_train_the_same_extractor_bytes(tiny, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(tiny.root)},
                                      "eval": tiny.cfg.model_dump(mode="json")}))
    shas = []
    for i, threads in enumerate(("1", "2")):  # the process's own setting must not matter
        weights, report = tmp_path / f"ext{i}" / "domain.pt", tmp_path / f"ext{i}" / "domain.json"
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", "train-extractor", "-c", str(params),
             "--set", f"eval.domain.weights={weights}", "--set", f"eval.domain.report={report}"],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "OMP_NUM_THREADS": threads})
        assert done.returncode == 0, done.stderr[-2000:]
        shas.append(hash_file(weights, "sha256"))
        assert json.loads(report.read_text())["sha256"] == shas[-1]
    assert shas[0] == shas[1]
