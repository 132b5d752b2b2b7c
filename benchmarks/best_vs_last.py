"""Does registering the FID curve's best checkpoint beat registering the last one?

For each seed, the default recipe (params.yaml; this project's prepared data and trained
extractor: `make run` or `dvc repro` first) trains --factor times its step budget with the curve
on (ganpkg.evaluation.progress), and the full protocol (eval.n_samples, bootstrap se) measures
three checkpoints: the last, the curve's best step, and what the flow's rule picks
(progress.choose_checkpoint: the best only beyond both 95% intervals, else the last). The same
checkpoints are measured on a second, independent extractor the gate never sees
(benchmarks/_second_extractor.py). Then the same at the default budget (--factor 1 run's curve
cut at total_steps is not the same run: a run of its own is trained).

    .venv/bin/python benchmarks/best_vs_last.py [--seeds 0 1 2] [--factor 2]

Last line: `ratio: N.NNN (...)` = median full-protocol fid_domain of the rule's pick / of the
last checkpoint, at --factor × the budget (below 1: the rule's pick is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from _second_extractor import SecondExtractor  # benchmarks/ is on sys.path when run as a script

from ganpkg.checkpoint import latest_checkpoint, load_generator
from ganpkg.config import load_config
from ganpkg.data.prepared import open_prepared
from ganpkg.evaluation.extractors import resolve_auto, resolve_extractor
from ganpkg.evaluation.fidelity import calculate
from ganpkg.evaluation.progress import BEST_FILE, ProgressEval, choose_checkpoint, read_progress
from ganpkg.training import train


def full_fid(path: Path, config, dataset, spec, second: SecondExtractor) -> dict:
    generator, info = load_generator(path)
    cfg = config.eval.model_copy(update={"floor": False, "baseline": False, "isc": False,
                                         "kid": False, "prc": False})
    metric = config.registry.primary_metric
    result = calculate(generator, dataset, cfg, spec, z_dim=info["z_dim"])
    value2, se2 = second.fid(generator, info["z_dim"], cfg.n_samples, seed=cfg.seed)
    return {"step": info["step"], metric: result.metrics[metric],
            "se": result.metrics[f"{metric}_se"], "second": value2, "second_se": se2}


def one_run(seed: int, steps: int, tmp: Path, dataset, spec, second) -> dict:
    config = resolve_auto(load_config("params.yaml", [
        f"train.total_steps={steps}", f"train.seed={seed}", f"train.run_dir={tmp / f's{seed}-{steps}'}"]))
    train(config, [ProgressEval(config, sinks=[])])
    run_dir = Path(config.train.run_dir)
    last = latest_checkpoint(run_dir / "checkpoints")
    metric = config.registry.primary_metric
    choice = choose_checkpoint(run_dir, last, steps, metric)
    curve = read_progress(run_dir)
    out = {"seed": seed, "steps": steps, "curve": [(p["step"], round(p[metric], 3)) for p in curve],
           "rule": choice.reason, "last": full_fid(last, config, dataset, spec, second),
           "best": full_fid(run_dir / BEST_FILE, config, dataset, spec, second)}
    out["pick"] = out["best"] if choice.checkpoint.name == BEST_FILE else out["last"]
    return out


def summary(runs: list[dict], key: str) -> str:
    parts = []
    for which in ("last", "best", "pick"):
        values = [r[which][key] for r in runs]
        parts.append(f"{which} {statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = resolve_auto(load_config("params.yaml"))
    dataset = open_prepared(base.data.prepared_dir)
    spec = resolve_extractor(base.eval, labels=dataset.labels)
    second = SecondExtractor(dataset, base.eval.holdout_fraction)
    budget = base.train.total_steps
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (budget * args.factor, budget):
            runs = [one_run(seed, steps, Path(tmp), dataset, spec, second) for seed in args.seeds]
            for r in runs:
                print(json.dumps(r))
            metric = base.registry.primary_metric
            print(f"{steps} steps, medians [ranges] over seeds {args.seeds}: {metric}: "
                  f"{summary(runs, metric)}; second extractor: {summary(runs, 'second')}")
            results[steps] = runs
    runs = results[budget * args.factor]
    metric = base.registry.primary_metric
    pick = statistics.median(r["pick"][metric] for r in runs)
    last = statistics.median(r["last"][metric] for r in runs)
    print(f"ratio: {pick / last:.3f} (median {metric} of the rule's pick / of the last checkpoint, "
          f"{budget * args.factor} steps, seeds {args.seeds})")


if __name__ == "__main__":
    main()
