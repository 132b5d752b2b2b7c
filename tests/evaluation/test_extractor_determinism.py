"""The extractors are the yardstick: trained in processes that simulate other CPUs (ATen's
vector-unit capability, oneDNN's and MKL's instruction sets) and other thread counts, each comes
out byte for byte the same, so a fresh clone on any x86-64 machine reproduces dvc.lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ganpkg.files import hash_file

# What another x86-64 CPU looks like to each library that dispatches on it, as far as a process
# can simulate it (each variable caps that library's code path below this machine's).
OTHER_CPUS = {
    "this machine": {},
    "AVX2 only": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                  "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2"},
    "SSE4.2 only": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "SSE4_2",
                    "OMP_NUM_THREADS": "1"},
}


def _train(kind: str, tiny, tmp_path, name: str, env: dict[str, str]) -> dict:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(tiny.root)},
                                      "eval": tiny.cfg.model_dump(mode="json")}))
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "train-extractor", kind, "-c", str(params),
         "--set", f"eval.{kind}.weights={out / 'x.pt'}",
         "--set", f"eval.{kind}.report={out / 'x.json'}"],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "x.json").read_text())
    assert report["sha256"] == hash_file(out / "x.pt", "sha256")
    return report


@pytest.mark.parametrize("kind", ["selfsup", "domain"])
def test_simulated_cpus_train_the_same_extractor_bytes(kind, tiny, tmp_path):
    reports = {cpu: _train(kind, tiny, tmp_path, f"cpu{i}", env)
               for i, (cpu, env) in enumerate(OTHER_CPUS.items())}
    assert {r["cpu_code_paths"] for r in reports.values()} == {"pinned"}
    assert len({r["sha256"] for r in reports.values()}) == 1, {
        cpu: r["sha256"][:12] for cpu, r in reports.items()}


def test_the_simulation_reaches_code_paths_that_change_bytes(tiny, tmp_path):
    """The control: without the pinned paths, the simulated CPUs do give other bytes (so the
    test above could fail, and the pin is what makes it pass)."""
    script = (
        "import sys, torch\n"
        "from ganpkg.data.prepared import open_prepared\n"
        "from ganpkg.config import EvalConfig\n"
        "from ganpkg.evaluation.extractor_selfsup import train_selfsup_extractor\n"
        "cfg = EvalConfig.model_validate_json(sys.argv[2])\n"
        "info = train_selfsup_extractor(open_prepared(sys.argv[1]), cfg, out=sys.argv[3],"
        " device='cpu')\n"
        "print(info['cpu_code_paths'], info['sha256'])\n"
    )
    shas = set()
    for i, env in enumerate(({"ATEN_CPU_CAPABILITY": "avx2"}, {"ATEN_CPU_CAPABILITY": "default"})):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tiny.root), tiny.cfg.model_dump_json(),
             str(tmp_path / f"native{i}.pt")],
            capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr[-2000:]
        paths, sha = done.stdout.strip().rsplit(" ", 1)
        assert paths.startswith("native")
        shas.add(sha)
    assert len(shas) == 2
