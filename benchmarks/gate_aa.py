"""The promotion gate measured: A/A false promotions and the power to see real improvements.

A/A: one trained checkpoint is evaluated under 2N evaluation seeds; pairs of those evaluations
play candidate and champion, so any promotion is one the gate made on evaluation noise alone
(target: 0/N). Power: the same run's earlier checkpoints as champions, the last one as the
candidate; each real improvement must be promoted. Uses the project's prepared/ data and domain
extractor (run `make run` once first) and params.yaml's eval/registry sections.

    .venv/bin/python benchmarks/gate_aa.py [--trials 20] [--steps 1500] [--n 10000]

Last line: `ratio: N.NN (...)` = the smallest promoted improvement over its combined standard
error (how far above the noise the smallest real gain the gate saw sits).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from ganpkg.config import load_config
from ganpkg.evaluation.fidelity import evaluate_checkpoint
from ganpkg.evaluation.protocol import protocol_tags
from pipelines.gate import CHAMPION, decide, memorization_key


def version_tags(result) -> dict[str, str]:
    """What a registered version carries: metric.* and eval.* tags."""
    tags = {f"metric.{k}": repr(v) for k, v in result.metrics.items()}
    return {**tags, **protocol_tags(result.protocol.as_dict())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="A/A pairs (2 evaluations each)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the run")
    parser.add_argument("--n", type=int, default=None, help="eval.n_samples (default params)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    from ganpkg.training import train

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"train.run_dir={tmp}/run", f"train.total_steps={args.steps}",
                     "train.keep_checkpoints=100", "eval.memorization=false",
                     "eval.floor=false", "eval.baseline=false"]
        if args.n:
            overrides.append(f"eval.n_samples={args.n}")
        config = load_config(args.params, overrides)
        metric, cfg = config.registry.primary_metric, config.registry
        started = time.perf_counter()
        result = train(config)
        print(f"trained {result.step} steps in {time.perf_counter() - started:.0f}s", flush=True)
        checkpoints = sorted(Path(tmp, "run", "checkpoints").glob("step-*.pt"))
        last = checkpoints[-1]

        def evaluate(checkpoint: Path, seed: int) -> dict[str, str]:
            seeded = config.model_copy(update={"eval": config.eval.model_copy(
                update={"seed": seed})})
            return version_tags(evaluate_checkpoint(checkpoint, seeded)[0])

        memorized = {f"metric.{memorization_key(metric)}": "0.0"}  # not what is measured here
        false_promotions, values, ses = 0, [], []
        for trial in range(args.trials):
            a, b = ({**evaluate(last, 2 * trial + k), **memorized} for k in (0, 1))
            decision = decide(a, b, "1", cfg)
            values.append(float(a[f"metric.{metric}"]))
            ses.append(float(a[f"metric.{metric}_se"]))
            false_promotions += decision.alias == CHAMPION
            print(f"A/A {trial:2d}: {metric} {float(a[f'metric.{metric}']):.4f} vs "
                  f"{float(b[f'metric.{metric}']):.4f} -> {decision.alias}", flush=True)
        spread = float(sum((v - sum(values) / len(values)) ** 2 for v in values)
                       / max(1, len(values) - 1)) ** 0.5
        print(f"false_promotions: {false_promotions}/{args.trials} (evaluation-seed sd of "
              f"{metric} {spread:.4g}; median bootstrap se {sorted(ses)[len(ses) // 2]:.4g})")

        # Power: the last checkpoint against each earlier one of the same run. A pair counts as
        # a real improvement when the gain is over 3 combined standard errors (the rest is
        # shown; GAN training is not monotone, so an earlier checkpoint may be the better one).
        candidate = {**evaluate(last, 0), **memorized}
        real, detected, ratios = 0, 0, []
        for earlier in checkpoints[:-1][::-1]:
            champion = {**evaluate(earlier, 1), **memorized}
            decision = decide(candidate, champion, "1", cfg)
            ours, theirs = (float(t[f"metric.{metric}"]) for t in (candidate, champion))
            gain = theirs - ours if cfg.lower_is_better else ours - theirs
            se = math.hypot(*(float(t[f"metric.{metric}_se"]) for t in (candidate, champion)))
            promoted = decision.alias == CHAMPION
            if gain > 3 * se:
                real += 1
                detected += promoted
            if promoted:
                ratios.append(gain / se)
            print(f"power: {last.stem} vs {earlier.stem}: {metric} {ours:.4f} vs {theirs:.4f} "
                  f"(gain {gain:.4g} = {gain / se:.1f} se) -> {decision.alias}", flush=True)
        print(f"power: {detected}/{real} real improvements (gain > 3 se) promoted")
        smallest = min(ratios) if ratios else float("nan")
        print(f"ratio: {smallest:.2f} (smallest promoted improvement / its combined se; "
              f"false promotions {false_promotions}/{args.trials})")


if __name__ == "__main__":
    main()
