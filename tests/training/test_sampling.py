"""`ganpkg sample` from a checkpoint: grids, folders, interpolations; same seed, same images."""

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from ganpkg.checkpoint import load_generator
from ganpkg.sampling import interpolation_latents, slerp
from ganpkg.training import train


def sample(*args):
    return subprocess.run([sys.executable, "-m", "pipelines", "sample", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_sample_grid_folder_and_interpolation(tmp_path, tiny_config):
    ckpt = train(tiny_config).checkpoint
    proc = sample("--checkpoint", ckpt, "--n", 9, "--out", tmp_path / "grid.png")
    assert proc.returncode == 0, proc.stderr
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 + 3 * 34, 2 + 3 * 34)  # 3×3 tiles of 32 px with 2 px padding

    assert sample("--checkpoint", ckpt, "--n", 5, "--out", tmp_path / "imgs").returncode == 0
    files = sorted((tmp_path / "imgs").glob("*.png"))
    assert len(files) == 5 and np.asarray(Image.open(files[0])).shape == (32, 32)

    proc = sample("--checkpoint", ckpt, "--interpolate", 2, "--steps", 4, "--out",
                  tmp_path / "interp.png")
    assert proc.returncode == 0, proc.stderr
    assert np.asarray(Image.open(tmp_path / "interp.png")).shape == (2 + 2 * 34, 2 + 4 * 34)


def test_sampling_is_reproducible_and_uses_the_ema_generator(tmp_path, tiny_config):
    ckpt = train(tiny_config).checkpoint
    for name in ("a.png", "b.png"):
        assert sample("--checkpoint", ckpt, "--seed", 3, "--out", tmp_path / name).returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    g_ema, info = load_generator(ckpt)
    g_raw, _ = load_generator(ckpt, ema=False)
    z = torch.randn(4, info["z_dim"])
    assert not torch.equal(g_ema(z), g_raw(z))
    assert info["step"] == tiny_config.train.total_steps


def test_bad_sample_arguments_are_one_line_errors(tmp_path):
    proc = sample("--out", tmp_path / "x.png")
    assert proc.returncode == 2 and "exactly one of --checkpoint" in proc.stderr
    proc = sample("--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "x.png")
    assert proc.returncode == 2 and "missing.pt: checkpoint not found" in proc.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    proc = sample("--checkpoint", tmp_path / "junk.pt", "--out", tmp_path / "x.png")
    assert proc.returncode == 2 and "not a readable ganpkg checkpoint" in proc.stderr


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    assert torch.allclose(slerp(a, b, torch.tensor(0.0)), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, torch.tensor(1.0)), b, atol=1e-5)
    assert interpolation_latents(2, 5, 16, seed=0).shape == (10, 16)
