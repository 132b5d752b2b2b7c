"""Recipe variants at the default step budget: fid_domain of each, over seeds (issue 13's survey).

Each variant is a list of --set overrides on params.yaml (the model stays the DCGAN). Every
variant trains train.total_steps on the prepared MNIST of this checkout (`make run` or `dvc
repro` first) and is evaluated on the committed domain extractor with n samples (no floor,
baseline, bootstrap or memorization: the ranking is what is wanted here). Prints one line per
(variant, seed) with the training seconds, then each variant's median and range, and the
ratio of the default's median to the best median. A survey, not the gate's yardstick: check a
winner with a second extractor and by eye before it becomes the default.

    .venv/bin/python benchmarks/recipe_variants.py [--seeds 0 1] [--n 5000]
        [--only NAME ...] [--grids DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ganpkg.config import load_config
from ganpkg.data.prepared import open_prepared
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import evaluate_generator
from ganpkg.sampling import fixed_noise, save_grid
from ganpkg.training import train

VARIANTS: dict[str, list[str]] = {
    "default": [],
    # stylegan2-ada's point: a long EMA drags in the first, untrained steps of a short run.
    "ema_0.99": ["train.ema_decay=0.99"],
    "ema_0.995_from_500": ["train.ema_decay=0.995", "train.ema_start_step=500"],
    # two time-scales: D learns faster than G
    "ttur": ["train.lr_d=4e-4", "train.lr_g=1e-4"],
    # SNGAN: hinge loss, spectral norm on D, Adam β1 0, TTUR
    "sngan_hinge": ["train.loss=hinge", "model.spectral_norm=true", "train.beta1=0.0",
                    "train.lr_d=4e-4", "train.lr_g=1e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n", type=int, default=5000, help="samples per evaluation")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--grids", type=Path, default=None, help="write a 64-sample grid each")
    args = parser.parse_args()
    names = args.only or list(VARIANTS)
    base = load_config("params.yaml")
    dataset = open_prepared(base.data.prepared_dir)
    results: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seeds outermost: each variant sees the same machine load
            for name in names:
                cfg = load_config("params.yaml", [*VARIANTS[name], f"train.seed={seed}",
                                                  f"train.run_dir={tmp}/{name}-{seed}",
                                                  "train.device=cpu", "eval.device=cpu",
                                                  f"eval.n_samples={args.n}", "eval.floor=false",
                                                  "eval.baseline=false", "eval.memorization=false",
                                                  "eval.bootstrap_resamples=0"])
                started = time.monotonic()
                result = train(cfg)
                seconds = time.monotonic() - started
                from ganpkg.checkpoint import load_generator

                generator, info = load_generator(result.checkpoint)
                fid = evaluate_generator(generator, info["z_dim"], dataset, cfg.eval,
                                         spec=resolve_extractor(cfg.eval)).metrics["fid_domain"]
                results[name].append(fid)
                if args.grids:
                    args.grids.mkdir(parents=True, exist_ok=True)
                    save_grid(generator, fixed_noise(64, info["z_dim"], 0),
                              args.grids / f"{name}-seed{seed}.png")
                print(f"{name:20s} seed {seed}: fid_domain {fid:8.3f}  ({seconds:.0f} s train)",
                      flush=True)
    print()
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        print(f"{name:20s} median {medians[name]:8.3f}  range {min(values):.3f}–{max(values):.3f}"
              f"  over {len(values)} seeds")
    best = min(medians, key=medians.get)
    if "default" in medians:
        print(f"ratio: {medians['default'] / medians[best]:.2f} (default median / best median, "
              f"best = {best}; fid_domain, n={args.n})")


if __name__ == "__main__":
    main()
