"""torchrun with 2 gloo processes computes the same step as one process on the global batch.

BatchNorm statistics are per process on CPU (SyncBatchNorm runs on CUDA only), so this uses a
BatchNorm-free config (model.g_norm=none, d_norm=none, spectral norm in D); on CUDA ganpkg
converts BatchNorm to SyncBatchNorm, which makes the statistics global there too.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ganpkg.callbacks import NullCallback
from ganpkg.checkpoint import load_checkpoint
from ganpkg.config import load_config
from ganpkg.data.prepared import open_prepared
from ganpkg.errors import UserError
from ganpkg.runtime import Runtime
from ganpkg.training import Trainer, train

NO_BN = ["model.g_norm=none", "model.d_norm=none", "model.spectral_norm=true", "train.r1_gamma=0",
         "train.total_steps=2", "train.checkpoint_every_steps=1", "train.keep_checkpoints=5"]


def test_two_rank_step_matches_single_process(tmp_path, tiny_overrides):
    overrides = tiny_overrides + NO_BN
    single = train(load_config(None, overrides + [f"train.run_dir={tmp_path / 'single'}"]))

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(load_config(None, overrides + [
        f"train.run_dir={tmp_path / 'ddp'}"]).model_dump(mode="json")))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "pipelines", "train", "-c", str(params)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for step in (1, 2):
        a = load_checkpoint(single.run_dir / "checkpoints" / f"step-{step:08d}.pt")
        b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / f"step-{step:08d}.pt")
        assert b["world_size"] == 2
        for key in ("g", "d"):
            for name, tensor in a[key].items():
                torch.testing.assert_close(b[key][name], tensor, rtol=1e-4, atol=1e-5,
                                           msg=f"step {step}: {key}.{name}")
    # The steps moved the weights, so agreeing means agreeing on the updates.
    first = load_checkpoint(single.run_dir / "checkpoints" / "step-00000001.pt")
    second = load_checkpoint(single.run_dir / "checkpoints" / "step-00000002.pt")
    assert not torch.equal(first["g"]["net.0.weight"], second["g"]["net.0.weight"])


def test_multi_process_cpu_refuses_batchnorm_and_gradient_penalty(tiny_config):
    data = open_prepared(tiny_config.data.prepared_dir)
    two_ranks = Runtime(torch.device("cpu"), rank=0, world_size=2)
    with pytest.raises(UserError, match="g_norm=none"):
        Trainer(tiny_config, data, two_ranks, NullCallback())
    tiny_config.model.g_norm = tiny_config.model.d_norm = "none"
    with pytest.raises(UserError, match="train.r1_gamma"):  # R1: a double backward too
        Trainer(tiny_config, data, two_ranks, NullCallback())
    tiny_config.train.r1_gamma = 0.0
    tiny_config.train.loss = "wgan_gp"
    with pytest.raises(UserError, match="wgan_gp"):
        Trainer(tiny_config, data, two_ranks, NullCallback())
