"""`ganpkg evaluate` and `ganpkg train-extractor` from the command line."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest
import torch
import yaml

from ganpkg import checkpoint as ckpt
from ganpkg.config import Config, ModelConfig
from ganpkg.networks import build_generator
from ganpkg.runtime import PINNED_CPU_ENV
from pipelines.cli import main


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint holding what load_generator reads (an untrained EMA generator)."""
    model = ModelConfig(z_dim=16, g_width=8)
    torch.manual_seed(0)
    g = build_generator(model, channels=1, resolution=32)
    state = {"format": ckpt.FORMAT_VERSION, "step": 7, "channels": 1, "resolution": 32,
             "config": Config(model=model).model_dump(mode="json"), "g_ema": g.state_dict()}
    path = tmp_path / "run" / "step-00000007.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path


def run_cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ganpkg", *args])
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def params_file(tiny, tmp_path):
    path = tmp_path / "params.yaml"
    raw = {"data": {"prepared_dir": str(tiny.root)}, "eval": tiny.cfg.model_dump(mode="json")}
    path.write_text(yaml.safe_dump(raw))
    return path


def test_evaluate_prints_the_metrics_table_with_its_protocol(tiny, checkpoint, tmp_path,
                                                             monkeypatch, capsys):
    params = params_file(tiny, tmp_path)
    code = run_cli(monkeypatch, "evaluate", "--checkpoint", str(checkpoint), "-c", str(params),
                   "--set", "eval.n_samples=200")
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("fid_domain", "kid_domain", "is_domain", "memorized_fraction_domain",
                   "extractor_weights_sha256", "reference_md5", "n_samples", "200", "step 7"):
        assert needle in out, needle
    folder = checkpoint.with_name("step-00000007-eval")
    assert (folder / "eval.json").is_file() and (folder / "memorization_pairs.png").is_file()


def test_evaluate_without_inception_weights_is_one_line_and_no_traceback(
        tiny, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    code = run_cli(monkeypatch, "evaluate", "--checkpoint", str(checkpoint),
                   "-c", str(params_file(tiny, tmp_path)),
                   "--set", "eval.extractor=inception-v3-compat")
    err = capsys.readouterr().err
    assert code == 2
    assert "eval.inception_weights=" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_train_extractor_writes_weights_and_accuracy(tiny, tmp_path, monkeypatch, capsys):
    weights, report = tmp_path / "ext" / "domain.pt", tmp_path / "ext" / "accuracy.json"
    # In this process, not re-executed with the pinned CPU paths (that would replace pytest).
    for key, value in PINNED_CPU_ENV.items():
        monkeypatch.setenv(key, value)
    code = run_cli(monkeypatch, "train-extractor", "domain", "-c", str(params_file(tiny, tmp_path)),
                   "--set", f"eval.domain.weights={weights}", "--set", f"eval.domain.report={report}")
    assert code == 0
    assert weights.is_file() and json.loads(report.read_text())["test_accuracy"] > 0.5
    err = capsys.readouterr().err
    assert "test accuracy" in err
    # Progress while it trains (DVC streams these into `ganpkg run`), ending at 100%.
    progress = [line for line in err.splitlines() if "domain extractor: batch" in line]
    assert len(progress) >= 2 and "(100%" in progress[-1], err


def test_train_alone_draws_the_fid_curve_where_its_extractor_is_ready(tiny, tmp_path,
                                                                      monkeypatch, capsys):
    params = params_file(tiny, tmp_path)
    run_dir = tmp_path / "run"
    code = run_cli(monkeypatch, "train", "-c", str(params), "--set", f"train.run_dir={run_dir}",
                   *[f"--set={o}" for o in ("model.z_dim=16", "model.g_width=8",
                                            "model.d_width=8", "train.batch_size=16",
                                            "train.total_steps=8", "train.checkpoint_every_steps=4",
                                            "train.sample_every_steps=8", "train.device=cpu",
                                            "eval.progress_n_samples=64")])
    out = "".join(capsys.readouterr())  # the bar and its lines go to stderr
    assert code == 0, out
    points = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [4, 8] and all(p["fid_domain"] > 0 for p in points)
    assert (run_dir / "best.pt").is_file()
    assert f"step 4: fid_domain {points[0]['fid_domain']:.4g}" in out, out


def test_train_alone_says_why_there_is_no_curve(tiny, tmp_path, monkeypatch, capsys):
    params = params_file(tiny, tmp_path)
    code = run_cli(monkeypatch, "train", "-c", str(params), "--set",
                   f"train.run_dir={tmp_path / 'run'}", "--set", "train.total_steps=2",
                   "--set", "model.g_width=8", "--set", "model.d_width=8", "--set",
                   f"eval.domain.weights={tmp_path / 'absent.pt'}")
    out = "".join(capsys.readouterr())
    assert code == 0, out
    assert "no FID curve: eval.domain.weights:" in out and "not found" in out, out
    assert not (tmp_path / "run" / "progress.jsonl").exists()



def test_train_alone_draws_no_curve_with_an_extractor_of_other_data(tiny, tmp_path,
                                                                    monkeypatch, capsys):
    from eval_helpers import N_IMAGES, make_shapes

    from ganpkg.data.prepared import write_prepared

    other = write_prepared(tmp_path / "other", *make_shapes(N_IMAGES, seed=1), {"source": "x"})
    params = params_file(tiny, tmp_path)
    code = run_cli(monkeypatch, "train", "-c", str(params), "--set", f"data.prepared_dir={other}",
                   "--set", f"train.run_dir={tmp_path / 'run'}", "--set", "train.total_steps=2",
                   "--set", "model.g_width=8", "--set", "model.d_width=8")
    out = "".join(capsys.readouterr())
    assert code == 0, out
    assert "no FID curve: eval.domain.weights:" in out and "trained on other data" in out, out
