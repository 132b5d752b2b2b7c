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

# Every variant starts from the recipe before issue 13 (Adam 2e-4, β1 0.5, no R1), so the survey
# reproduces whatever params.yaml now says; b03_r1_1 is the default the survey chose.
BEFORE_ISSUE_13 = ["train.lr_g=2e-4", "train.lr_d=2e-4", "train.beta1=0.5", "train.r1_gamma=0"]
B03 = ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.beta1=0.3"]  # round 2's best
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
    # faster learning: a short run can afford larger steps
    "lr_5e-4": ["train.lr_g=5e-4", "train.lr_d=5e-4"],
    "lr_1e-3": ["train.lr_g=1e-3", "train.lr_d=1e-3"],
    "beta1_0": ["train.beta1=0.0"],
    # the same images seen, in more (smaller) or fewer (larger) updates
    "batch32_3000": ["train.batch_size=32", "train.total_steps=3000"],
    "batch128_750": ["train.batch_size=128", "train.total_steps=750"],
    # capacity: a wider generator, or D without BatchNorm but spectrally normalized
    "g_width64": ["model.g_width=64"],
    "d_sn_nobn": ["model.d_norm=none", "model.spectral_norm=true"],
    # round 2: on top of the larger learning rate, which won round 1
    "lr_2e-3": ["train.lr_g=2e-3", "train.lr_d=2e-3"],
    "lr_1e-3_beta1_0.3": B03,
    "lr_g1e-3_d5e-4": ["train.lr_g=1e-3", "train.lr_d=5e-4"],
    "lr_g5e-4_d1e-3": ["train.lr_g=5e-4", "train.lr_d=1e-3"],
    "lr_1e-3_ema_0.99": ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.ema_decay=0.99"],
    "lr_1e-3_batch32_2700": ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.batch_size=32",
                             "train.total_steps=2700"],
    "lr_1e-3_hinge": ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.loss=hinge"],
    # round 3, on round 2's best (lr 1e-3, β1 0.3): rates annealed to 0 over the run
    # (train.lr_schedule), β1 lower still, R1 on real images (train.r1_gamma)
    "lr_1e-3_beta1_0": ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.beta1=0.0"],
    "b03_linear": [*B03, "train.lr_schedule=linear"],
    "b03_lr_2e-3_linear": ["train.lr_g=2e-3", "train.lr_d=2e-3", "train.beta1=0.3",
                           "train.lr_schedule=linear"],
    "b03_r1_0.01": [*B03, "train.r1_gamma=0.01"],
    "b03_r1_0.1": [*B03, "train.r1_gamma=0.1"],
    # round 4: R1's weight, and R1 at fewer steps (its double backward costs time)
    "b03_r1_0.3": [*B03, "train.r1_gamma=0.3"],
    "b03_r1_1": [*B03, "train.r1_gamma=1.0"],
    "b03_r1_0.1_1250": [*B03, "train.r1_gamma=0.1", "train.total_steps=1250"],
    "b03_r1_0.1_every32": [*B03, "train.r1_gamma=0.1", "train.r1_every=32"],
    "b0_r1_0.1": ["train.lr_g=1e-3", "train.lr_d=1e-3", "train.beta1=0.0", "train.r1_gamma=0.1"],
    # round 5: R1 stronger still, and with round 2's runner-up rate
    "b03_r1_3": [*B03, "train.r1_gamma=3.0"],
    "b03_r1_10": [*B03, "train.r1_gamma=10.0"],
    "b03_r1_1_lr_2e-3": ["train.lr_g=2e-3", "train.lr_d=2e-3", "train.beta1=0.3",
                         "train.r1_gamma=1.0"],
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
                cfg = load_config("params.yaml", [*BEFORE_ISSUE_13, *VARIANTS[name],
                                                  f"train.seed={seed}",
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
