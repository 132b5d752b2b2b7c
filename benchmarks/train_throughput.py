"""Training throughput: ganpkg's training step against a plain pytorch/examples DCGAN step.

Same networks (ganpkg's DCGAN at the default config's shapes), same batch, fp32, same process,
runs interleaved so both see the same machine load. ganpkg's side is timed as training runs it,
data loading from the memory-mapped prepared format and noise draws included; the reference gets
its inputs for free. Before timing, both start from the same weights and take the same steps on
the same inputs in float64, and the script prints how far apart their generator updates end up
(rounding only: the optimisations must not change results).

    python benchmarks/train_throughput.py [--width 64] [--batch 64] [--reps 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganpkg.callbacks import NullCallback
from ganpkg.config import load_config
from ganpkg.data.prepared import open_prepared, write_prepared
from ganpkg.device import resolve_device
from ganpkg.runtime import Runtime
from ganpkg.training import Trainer


class ReferenceDCGANStep:
    """pytorch/examples dcgan/main.py's update: Sigmoid + BCELoss, two D backwards, Adam."""

    def __init__(self, g: nn.Module, d: nn.Module, lr: float, betas: tuple[float, float]):
        self.g, self.d = g, d
        self.opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=betas)
        self.criterion, self.sigmoid = nn.BCELoss(), nn.Sigmoid()

    def __call__(self, real: torch.Tensor, z: torch.Tensor) -> None:
        b = real.shape[0]
        self.d.zero_grad()
        label = torch.full((b,), 1.0, device=real.device, dtype=real.dtype)
        self.criterion(self.sigmoid(self.d(real)), label).backward()
        fake = self.g(z)
        label.fill_(0.0)
        self.criterion(self.sigmoid(self.d(fake.detach())), label).backward()
        self.opt_d.step()
        self.g.zero_grad()
        label.fill_(1.0)
        self.criterion(self.sigmoid(self.d(fake)), label).backward()
        self.opt_g.step()


def make_trainer(width: int, batch: int, device: torch.device, root: Path) -> Trainer:
    rng = np.random.default_rng(0)
    n = batch * 40
    images = rng.integers(0, 256, (n, 1, 32, 32), dtype=np.uint8)
    prepared = write_prepared(root / "prepared", images, np.zeros(n, np.int64), {})
    config = load_config(None, [f"model.g_width={width}", f"model.d_width={width}",
                                f"train.batch_size={batch}", f"data.prepared_dir={prepared}",
                                f"train.run_dir={root / 'run'}", f"train.device={device.type}",
                                # the example's optimiser and no R1: the same math, step for step
                                "train.lr_g=2e-4", "train.lr_d=2e-4", "train.beta1=0.5",
                                "train.r1_gamma=0"])
    return Trainer(config, open_prepared(prepared), Runtime(device), NullCallback())


def update_gap(trainer: Trainer, steps: int = 5) -> float:
    """‖ΔG_ours − ΔG_ref‖ / ‖ΔG_ref‖ after the same steps from the same weights and inputs.

    Run in float64: Adam moves each weight by about ±lr whatever its gradient's size, so in
    fp32 rounding alone flips the steps of weights whose gradients are near zero, and the gap
    says nothing about the math. In float64 the two updates must agree to rounding.
    """
    ours = copy.deepcopy(trainer)
    ours.g_plain.double()  # in place: the optimizers keep pointing at the same parameters
    ours.d_plain.double()
    ref = ReferenceDCGANStep(copy.deepcopy(ours.g_plain).to(memory_format=torch.contiguous_format),
                             copy.deepcopy(ours.d_plain).to(memory_format=torch.contiguous_format),
                             trainer.config.train.lr_g,
                             (trainer.config.train.beta1, trainer.config.train.beta2))
    start = [p.detach().clone() for p in ours.g_plain.parameters()]
    for step in range(steps):
        reals, zs, alphas = ours._inputs()
        reals, zs = [r.double() for r in reals], [z.double() for z in zs]
        ours.step_fn(reals, zs, alphas, step=step)
        ref(reals[0].contiguous(), zs[0])
    ours_delta = torch.cat([(p.detach() - s).flatten()
                            for p, s in zip(ours.g_plain.parameters(), start)])
    ref_delta = torch.cat([(p.detach() - s).flatten() for p, s in zip(ref.g.parameters(), start)])
    return ((ours_delta - ref_delta).norm() / ref_delta.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=4, help="steps per round and side")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device, "--device")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(args.width, args.batch, device, Path(tmp))
        gap = update_gap(trainer)
        ref = ReferenceDCGANStep(copy.deepcopy(trainer.g_plain).to(memory_format=torch.contiguous_format),
                                 copy.deepcopy(trainer.d_plain).to(memory_format=torch.contiguous_format),
                                 trainer.config.train.lr_g,
                             (trainer.config.train.beta1, trainer.config.train.beta2))
        if device.type == "cuda":
            # The reference's fp32 numbers against ganpkg's bf16 autocast: the GPU profile.
            torch.backends.cuda.matmul.allow_tf32 = False
        real = trainer._inputs()[0][0].contiguous()
        z = torch.randn(args.batch, trainer.config.model.z_dim, device=device)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        def ours_round() -> None:
            for step in range(args.steps):
                trainer.step_fn(*trainer._inputs(), step=step)

        def ref_round() -> None:
            for _ in range(args.steps):
                ref(real, z)

        for fn in (ours_round, ref_round):  # warm-up: allocator, oneDNN/cuDNN kernel choice
            fn()
        times: dict[str, list[float]] = {"ours": [], "reference": []}
        for _ in range(args.reps):
            for name, fn in (("reference", ref_round), ("ours", ours_round)):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append((time.perf_counter() - start) / args.steps)

    rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
    print(f"device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"shapes: 32x32x1, width {args.width}, batch {args.batch}, "
          f"bf16 {'on' if device.type == 'cuda' else 'off (CPU: fp32)'}")
    print(f"same math: relative gap of the generator updates after 5 identical float64 steps: "
          f"{gap:.1e}")
    print(f"reference (pytorch/examples DCGAN step): {rate['reference']:.0f} images/s")
    print(f"ganpkg training step (data loading included): {rate['ours']:.0f} images/s")
    print(f"ratio: {rate['ours'] / rate['reference']:.2f} (ganpkg training images/s vs "
          f"pytorch/examples DCGAN step, same shapes and batch)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
