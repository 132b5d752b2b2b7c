"""The FID curve's price: in-training evaluation time as a share of training time.

Trains the default recipe (params.yaml, this project's prepared data and trained extractor:
run `make run` or `dvc repro` first) for --steps generator steps with the curve on at its
defaults (a point at every checkpoint, eval.progress_n_samples samples), and times the two
apart in the same process: the points' own seconds (ProgressEval.seconds) against the rest of
the training's wall time. The default cadence is one point per train.checkpoint_every_steps,
so the share at --steps 500 is the share of the default 1500-step run.

    .venv/bin/python benchmarks/progress_cost.py [--steps 500] [--threads 2]

Last line: `ratio: N.NNN (...)` = evaluation seconds / training seconds (the issue's bound: 0.10).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ganpkg.config import load_config
from ganpkg.evaluation.extractors import resolve_auto
from ganpkg.evaluation.progress import PROGRESS_FILE, ProgressEval
from ganpkg.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_auto(load_config("params.yaml", [
            f"train.total_steps={args.steps}", f"train.run_dir={Path(tmp) / 'run'}"]))
        curve = ProgressEval(config, sinks=[])
        start = time.perf_counter()
        train(config, [curve])
        total = time.perf_counter() - start
        points = [json.loads(line) for line in
                  (Path(tmp) / "run" / PROGRESS_FILE).read_text().splitlines()]
    for point in points:
        print(json.dumps(point))
    training = total - curve.seconds
    print(f"training {training:.1f}s for {args.steps} steps; {len(points)} curve points "
          f"{curve.seconds:.1f}s ({curve.seconds / max(len(points), 1):.1f}s each, "
          f"n={config.eval.progress_n_samples}, {config.eval.extractor})")
    print(f"ratio: {curve.seconds / training:.3f} (in-training evaluation / training time, "
          f"default recipe, {args.threads} threads)")


if __name__ == "__main__":
    main()
