"""The FID curve: a cheap pass of the evaluation protocol at checkpoints during training.

What stylegan2-ada's ``metric-fid50k_full.jsonl`` is to its runs: at each checkpoint of
``train.eval_every_steps`` the EMA generator's primary metric on ``eval.progress_n_samples``
samples, with its bootstrap standard error (no floor, baseline or memorization: those belong
to the final evaluation). Each point is appended to ``run_dir/progress.jsonl`` and reported
through the callbacks' ``on_eval``; the best step so far is copied to ``run_dir/best.pt``, which
``train.keep_checkpoints`` never prunes. ``choose_checkpoint`` then picks what the flow
evaluates in full and registers.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ganpkg.callbacks import NullCallback, TrainingCallback
from ganpkg.config import AUTO_EXTRACTOR, Config
from ganpkg.files import atomic_write
from ganpkg.metrics import lower_is_better, parse, qualified

PROGRESS_FILE = "progress.jsonl"
BEST_FILE = "best.pt"
PROGRESS_RESAMPLES = 20
_log = logging.getLogger("ganpkg.evaluation")


class ProgressEval(NullCallback):
    """A training callback (after the tracker in the list) that measures checkpoints.

    ``config`` must be resolved (``eval.extractor`` not ``auto``, a concrete primary metric):
    the flow resolves it from the prepared data before training. ``sinks`` receive ``on_eval``.
    """

    def __init__(self, config: Config, sinks: list[TrainingCallback]):
        self.config, self.sinks = config, sinks
        self.metric = config.registry.primary_metric
        self.every = config.train.eval_every_steps or config.train.checkpoint_every_steps
        flag = parse(self.metric).metric.flag  # only the metric's own family is computed
        # 20 bootstrap resamples: a curve's se within about 16% of itself, at 40% of 50's cost
        # (the point's price is its features and these resamples; measured in
        # benchmarks/progress_cost.py)
        self.cfg = config.eval.model_copy(update={
            "n_samples": config.eval.progress_n_samples, "floor": False, "baseline": False,
            "memorization": False, **{f: f == flag for f in ("fid", "isc", "kid", "prc")},
            "bootstrap_resamples": min(config.eval.bootstrap_resamples, PROGRESS_RESAMPLES)})
        self.run_dir: Path | None = None
        self.seconds = 0.0  # spent measuring, in this process (its share of training time)
        self._dataset = self._spec = None

    def on_start(self, config: dict, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def on_checkpoint(self, step: int, path: Path) -> None:
        if step % self.every and step != self.config.train.total_steps:
            return
        points = read_progress(self.run_dir)
        if any(p["step"] == step for p in points):
            return  # measured before a resume: the same weights, the same value
        start = time.perf_counter()
        point = self.measure(step, Path(path))
        self.seconds += time.perf_counter() - start
        points.append(point)
        with open(self.run_dir / PROGRESS_FILE, "a") as out:  # one line per point, appended
            out.write(json.dumps(point) + "\n")
        best = best_point(points, self.metric)
        if best["step"] == step:
            with atomic_write(self.run_dir / BEST_FILE) as dst, open(path, "rb") as src:
                shutil.copyfileobj(src, dst)
        se = point.get(qualified(self.metric, "se"))
        _log.info("step %d %s %.4g%s on %d samples (best %.4g at step %d; %.1fs)", step,
                  self.metric, point[self.metric], f" ± {se:.2g}" if se is not None else "",
                  self.cfg.n_samples, best[self.metric], best["step"], point["seconds"])
        report = {k: v for k, v in point.items() if k not in ("step", "seconds", "n_samples")}
        for sink in self.sinks:
            sink.on_eval(step, report)

    def measure(self, step: int, checkpoint: Path) -> dict:
        from ganpkg.checkpoint import load_generator
        from ganpkg.data.prepared import open_prepared
        from ganpkg.evaluation.extractors import resolve_extractor
        from ganpkg.evaluation.fidelity import calculate

        start = time.perf_counter()
        if self._dataset is None:
            self._dataset = open_prepared(self.config.data.prepared_dir)
            self._spec = resolve_extractor(self.cfg, labels=self._dataset.labels)
        generator, info = load_generator(checkpoint)
        result = calculate(generator, self._dataset, self.cfg, self._spec, z_dim=info["z_dim"])
        se_name = qualified(self.metric, "se")
        point = {"step": step, self.metric: result.metrics[self.metric]}
        if se_name in result.metrics:
            point[se_name] = result.metrics[se_name]
        point["n_samples"] = self.cfg.n_samples
        point["seconds"] = round(time.perf_counter() - start, 3)
        return point


def read_progress(run_dir: Path | None) -> list[dict]:
    """The run's FID-curve points, oldest first ([] before the first)."""
    if run_dir is None or not (Path(run_dir) / PROGRESS_FILE).is_file():
        return []
    lines = (Path(run_dir) / PROGRESS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def best_point(points: list[dict], metric: str) -> dict:
    """The point with the best value of ``metric`` (the earliest of equals)."""
    sign = 1 if lower_is_better(metric) else -1
    return min(points, key=lambda p: (sign * p[metric], p["step"]))


@dataclass(frozen=True)
class Choice:
    """What the flow evaluates in full: a checkpoint, its step and why it was chosen."""

    checkpoint: Path
    step: int
    reason: str


def choose_checkpoint(run_dir: Path, last: Path, last_step: int, metric: str,
                      z: float = 1.96) -> Choice:
    """The best step of the FID curve when it beats the last one beyond both intervals, else
    the last: the minimum of noisy values is biased towards luck (the winner's curse), and where
    the curve cannot tell them apart the longer-trained generator is kept."""
    points = read_progress(run_dir)
    at_last = next((p for p in points if p["step"] == last_step), None)
    if not points or at_last is None or not (Path(run_dir) / BEST_FILE).is_file():
        return Choice(last, last_step, "last checkpoint (no curve point at it)")
    best = best_point(points, metric)
    if best["step"] == last_step:
        return Choice(last, last_step, f"last checkpoint (step {last_step}) is the curve's best")
    se = qualified(metric, "se")
    sign = 1 if lower_is_better(metric) else -1
    gap = sign * (at_last[metric] - best[metric])
    noise = z * (at_last.get(se, 0.0) + best.get(se, 0.0))
    said = (f"{metric} {best[metric]:.4g} at step {best['step']} vs {at_last[metric]:.4g} at "
            f"the last step {last_step}, on {best.get('n_samples', '?')} samples")
    if gap > noise:
        return Choice(Path(run_dir) / BEST_FILE, int(best["step"]),
                      f"best step {best['step']} beats the last beyond the 95% intervals ({said})")
    return Choice(last, last_step, f"last checkpoint: the best step {best['step']} is within "
                                   f"the 95% intervals of it ({said})")


def progress_callbacks(config: Config, sinks: list[TrainingCallback]) -> list[TrainingCallback]:
    """[ProgressEval] where the curve is on (eval.progress_n_samples > 0) and the config names
    its extractor and metric (resolved), else []."""
    if config.eval.progress_n_samples == 0 or config.eval.extractor == AUTO_EXTRACTOR \
            or parse(config.registry.primary_metric) is None:
        return []
    return [ProgressEval(config, sinks)]
