"""A run killed with SIGKILL and resumed ends bit-identical to one never interrupted (CPU)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from ganpkg.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from ganpkg.config import load_config
from ganpkg.errors import UserError
from ganpkg.training import train

LONG = ["train.total_steps=300", "train.checkpoint_every_steps=10", "train.keep_checkpoints=2",
        "train.log_every_steps=10", "train.sample_every_steps=100"]


def assert_same_state(a, b):
    for key in ("g", "d", "g_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs"
    assert a["step"] == b["step"] and a["data_order"] == b["data_order"]


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_overrides):
    overrides = tiny_overrides + LONG
    reference = train(load_config(None, overrides + [f"train.run_dir={tmp_path / 'ref'}"]))

    run_dir = tmp_path / "killed"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(load_config(None, overrides + [
        f"train.run_dir={run_dir}"]).model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "train", "-c", str(params)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while latest_checkpoint(run_dir / "checkpoints") is None and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    time.sleep(0.05)  # land somewhere between checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))["step"]
    assert 0 < killed_at < 300, "the run must be killed mid-way for this test to mean anything"
    assert not (run_dir / "status.json").exists()

    resumed = train(load_config(params))
    assert resumed.step == 300
    assert_same_state(load_checkpoint(resumed.checkpoint), load_checkpoint(reference.checkpoint))


def test_checkpoint_is_self_describing(tiny_config):
    result = train(tiny_config)
    state = load_checkpoint(result.checkpoint)
    expected = {"g", "d", "g_ema", "opt_g", "opt_d", "step", "data_order", "rng", "config",
                "channels", "resolution", "torch_version"}
    assert expected <= set(state)
    assert state["opt_g"]["state"], "optimizer moments must be saved"
    assert set(state["rng"]) >= {"noise", "torch_cpu"}
    assert len(list_checkpoints(result.run_dir / "checkpoints")) <= tiny_config.train.keep_checkpoints
    assert (result.run_dir / "config.yaml").is_file()
    assert sorted(p.name for p in (result.run_dir / "samples").iterdir()) == [
        "step-00000000.png", "step-00000006.png", "step-00000012.png"]


def test_resume_refuses_a_different_config(tiny_overrides):
    train(load_config(None, tiny_overrides))
    with pytest.raises(UserError, match="train.lr_g"):
        train(load_config(None, tiny_overrides + ["train.total_steps=20", "train.lr_g=0.002"]))
    # Raising the step budget is allowed and continues the same run.
    assert train(load_config(None, tiny_overrides + ["train.total_steps=16"])).step == 16
