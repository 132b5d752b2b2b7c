"""FID at equal wall-clock: ganpkg's default recipe vs a plain pytorch/examples-style DCGAN.

Same data (MNIST, prepared by ganpkg at the params.yaml resolution), same CPU threads, same
evaluation (ganpkg's domain extractor, the same protocol and n). ganpkg trains its default
config (params.yaml's model/train sections) for train.total_steps; its wall-clock T is the
budget the reference then gets: the pytorch/examples DCGAN (BCE, Adam 2e-4/0.5, batch 64,
no EMA), trained until T has passed, then evaluated in its better BatchNorm mode (running
averages, or batch statistics as the example's own samples use). Repeated for each seed, the
two sides back to back. Each FID has its bootstrap standard error; the floor is held-out real
images against the same reference. Everything is measured twice: on the gate's extractor and on
a second, independent one the gate never sees (benchmarks/_second_extractor.py), so a recipe
tuned to the first is checked by the second.

    .venv/bin/python benchmarks/quality_at_budget.py [--seeds 0 1 2] [--n 10000] [--steps N]
        [--work DIR]    # keep (and reuse) the prepared data and the extractor there
        [--grids DIR]   # 64-sample grids of both sides per seed, to look at what the FIDs say

Last line: `ratio: N.NN (...)` = reference median FID / ganpkg median FID (fid_domain).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _second_extractor import SecondExtractor  # benchmarks/ is on sys.path when run as a script
from torch import nn

from ganpkg.config import load_config
from ganpkg.data.ingest import ingest
from ganpkg.data.prepare import prepare
from ganpkg.data.prepared import open_prepared, uint8_to_float
from ganpkg.evaluation.extractor_domain import train_domain_extractor
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import evaluate_generator
from ganpkg.training import train


def examples_dcgan(nz: int, nc: int, ngf: int = 64, ndf: int = 64) -> tuple[nn.Module, nn.Module]:
    """pytorch/examples dcgan/main.py networks with one up/down block less (32×32 images)."""
    g = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid(), nn.Flatten(0),
    )

    def weights_init(m: nn.Module) -> None:  # as in the example
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    g.apply(weights_init)
    d.apply(weights_init)
    return g, d


class Latent(nn.Module):
    """(N, nz) → (N, nz, 1, 1), so the example's G has the ganpkg generator contract.

    ``batch_stats``: BatchNorm uses the batch's statistics, as pytorch/examples' own samples do
    (it never calls eval()); otherwise the running averages, as after eval().
    """

    def __init__(self, g: nn.Module, nz: int):
        super().__init__()
        self.g, self.nz, self.batch_stats = g, nz, False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.batch_stats:
            self.g.train()  # torch-fidelity's wrapper calls eval() on what it samples
        return self.g(z.view(-1, self.nz, 1, 1))


def train_reference(dataset, nz: int, seed: int, seconds: float) -> tuple[nn.Module, int]:
    """The example's training loop (BCE, Adam 2e-4/0.5, batch 64) until `seconds` pass."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    g, d = examples_dcgan(nz, dataset.channels)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for idx in np.array_split(rng.permutation(len(dataset)), len(dataset) // 64):
            if time.perf_counter() - start >= seconds:
                break
            real = uint8_to_float(dataset.batch_uint8(idx))
            n = len(real)
            fake = g(torch.randn(n, nz, 1, 1))
            d.zero_grad()
            loss_d = bce(d(real), torch.ones(n)) + bce(d(fake.detach()), torch.zeros(n))
            loss_d.backward()
            opt_d.step()
            g.zero_grad()
            bce(d(fake), torch.ones(n)).backward()
            opt_g.step()
            steps += 1
    return Latent(g.eval(), nz), steps


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.4g} (range {min(values):.4g}–{max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="params.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=10000, help="generated samples per evaluation")
    parser.add_argument("--steps", type=int, default=None, help="override train.total_steps")
    parser.add_argument("--work", default=None, help="keep data/extractor here (reused)")
    parser.add_argument("--grids", default=None, help="save both sides' sample grids here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ganpkg-quality-"))
    overrides = [f"data.raw_dir={work / 'data'}", f"data.prepared_dir={work / 'prepared'}",
                 "train.device=cpu", "eval.device=cpu", "eval.extractor=domain",
                 f"eval.domain.weights={work / 'domain.pt'}",
                 f"eval.domain.report={work / 'domain.json'}", f"eval.n_samples={args.n}",
                 f"eval.cache_dir={work / 'cache'}", "eval.memorization=false",
                 "eval.baseline=false"]
    if args.steps:
        overrides.append(f"train.total_steps={args.steps}")
    try:
        cfg = load_config(args.config if Path(args.config).is_file() else None, overrides)
        if not (work / "prepared").is_dir():
            ingest(cfg.data)
            prepare(cfg.data)
        dataset = open_prepared(cfg.data.prepared_dir)
        if not Path(cfg.eval.domain.weights).is_file():
            train_domain_extractor(dataset, cfg.eval, device="cpu")
        spec = resolve_extractor(cfg.eval)
        second = SecondExtractor(dataset, cfg.eval.holdout_fraction)
        print(f"second extractor: LeNet, test accuracy {second.test_accuracy:.4f} "
              f"(outside the gate)", flush=True)
        quiet = cfg.eval.model_copy(update={"floor": False})

        def measure(g: nn.Module, eval_cfg) -> tuple[dict, tuple[float, float]]:
            metrics = evaluate_generator(g, cfg.model.z_dim, dataset, eval_cfg, spec=spec).metrics
            return metrics, second.fid(g, cfg.model.z_dim, args.n, seed=cfg.eval.seed)

        floors: dict[str, tuple[float, float]] = {}
        sides: dict[str, dict[str, list[float]]] = {
            side: {"domain": [], "second": []} for side in ("ganpkg", "reference")}
        for seed in args.seeds:
            # Back to back on one seed: both sides see the same machine load.
            run = cfg.model_copy(deep=True)
            run.train.seed, run.train.run_dir = seed, str(work / f"run-{seed}")
            shutil.rmtree(run.train.run_dir, ignore_errors=True)
            start = time.perf_counter()
            result = train(run)
            budget = time.perf_counter() - start
            from ganpkg.checkpoint import load_generator

            ours, _ = load_generator(result.checkpoint)
            ref, ref_steps = train_reference(dataset, cfg.model.z_dim, seed, budget)
            first = not floors
            m_ours, s_ours = measure(ours, cfg.eval if first else quiet)
            if first:  # the floor: held-out real images on the same protocol, both extractors
                floors["domain"] = (m_ours["fid_domain_floor"], m_ours.get("fid_domain_floor_se",
                                                                           float("nan")))
                floors["second"] = second.floor(args.n)
            # The baseline gets its better sampling mode: running averages or batch statistics.
            modes = {}
            for batch_stats in (False, True):
                ref.batch_stats = batch_stats
                modes[batch_stats] = measure(ref, quiet)
            ref.batch_stats = min(modes, key=lambda b: modes[b][0]["fid_domain"])
            m_ref, s_ref = modes[ref.batch_stats]
            for side, m, s2 in (("ganpkg", m_ours, s_ours), ("reference", m_ref, s_ref)):
                sides[side]["domain"].append(m["fid_domain"])
                sides[side]["second"].append(s2[0])
            print(f"seed {seed}: {budget:.0f} s each | ganpkg {result.step} steps: fid_domain "
                  f"{m_ours['fid_domain']:.4g} ± {m_ours['fid_domain_se']:.2g}, second "
                  f"{s_ours[0]:.4g} ± {s_ours[1]:.2g} | reference {ref_steps} steps "
                  f"({'batch statistics' if ref.batch_stats else 'running averages'}): "
                  f"fid_domain {m_ref['fid_domain']:.4g} ± {m_ref['fid_domain_se']:.2g}, second "
                  f"{s_ref[0]:.4g} ± {s_ref[1]:.2g}", flush=True)
            if args.grids:
                from ganpkg.sampling import fixed_noise, save_grid

                z = fixed_noise(64, cfg.model.z_dim, seed)
                save_grid(ours, z, Path(args.grids) / f"seed{seed}-ganpkg.png")
                save_grid(ref, z, Path(args.grids) / f"seed{seed}-reference.png")
        ratios = {}
        for name in ("second", "domain"):  # the gate's extractor last: its ratio is the headline
            ours_m = statistics.median(sides["ganpkg"][name])
            ratios[name] = statistics.median(sides["reference"][name]) / ours_m
            floor, floor_se = floors[name]
            print(f"{name} extractor: ganpkg {spread(sides['ganpkg'][name])}, reference "
                  f"{spread(sides['reference'][name])}, floor {floor:.4g}"
                  f"{f' ± {floor_se:.2g}' if math.isfinite(floor_se) else ''} "
                  f"(ganpkg's median {ours_m / floor:.1f}× the floor); ratio of medians "
                  f"{ratios[name]:.2f}")
        print(f"ratio: {ratios['domain']:.2f} (pytorch/examples DCGAN / ganpkg default, median "
              f"fid_domain over seeds {' '.join(map(str, args.seeds))}, n={args.n}, equal "
              f"wall-clock on CPU; second extractor {ratios['second']:.2f})")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
