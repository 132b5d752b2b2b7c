"""An evaluation on its MLflow run: the metric values as charts, the rest as a table and files.

Each metric's value is ``eval/<metric>`` at the training step it measured; what is recorded
beside it (se, interval, floor, baseline) is one number per evaluation, so it is the table
``evaluation/summary.json`` and ``evaluation/eval.json`` (everything, memorization included),
not a one-dot chart; the protocol is the packed ``eval.protocol`` tag plus the fields users
filter runs on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ganpkg.evaluation.protocol import packed_tag, protocol_tags
from ganpkg.metrics import charted, summarize
from pipelines.tracking import EVAL, get_client

EVAL_RECORD = "evaluation/eval.json"  # everything an evaluation measured, as it measured it
FILTER_TAGS = ("eval.extractor", "eval.n_samples")  # the protocol's fields users filter runs on


def eval_metrics(metrics: dict[str, float], step: int, **link: str) -> list:
    """An evaluation's values as MLflow Metrics named ``eval/…`` at the step they measured;
    ``link``: model_id, dataset_name and dataset_digest (MLflow 3's logged-model view)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(EVAL + k, float(v), now, step, **link) for k, v in metrics.items()]


def log_evaluation(run_id: str, metrics: dict[str, float], protocol: dict[str, Any],
                   memorization: dict[str, Any] | None = None, step: int | None = None,
                   files: list[str | Path] = (), tracking_uri: str | None = None) -> None:
    """An evaluation on the run: each metric's value as ``eval/<metric>`` at the training step
    it measured (a chart), what is recorded beside it (se, interval, floor, baseline) as the
    table ``evaluation/summary.json`` (one number each: a one-dot chart says nothing), the
    protocol as the packed ``eval.protocol`` tag plus the two tags users filter on, and
    ``evaluation/`` files: eval.json (everything, memorization included) and e.g. the
    memorization pairs PNG."""
    from mlflow.entities import RunTag

    client = get_client(tracking_uri)
    tags = {**packed_tag(protocol), **{k: v for k, v in protocol_tags(protocol).items()
                                       if k in FILTER_TAGS}}
    client.log_batch(run_id, metrics=eval_metrics(charted(metrics), step or 0),
                     tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_table(run_id, summary_table(metrics, step or 0), "evaluation/summary.json")
    body = {"metrics": metrics, "protocol": protocol, "memorization": memorization}
    client.log_dict(run_id, body, EVAL_RECORD)
    for path in files:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), "evaluation")


def summary_table(metrics: dict[str, float], step: int) -> dict[str, list]:
    """One row per metric: its value and what is recorded beside it, at 4 significant digits
    (the full values are in eval.json); empty cells where a statistic was not measured. An
    evaluation of another checkpoint appends its rows (MLflow's tables append): ``step`` says
    which checkpoint a row measured."""
    def short(value: float | None) -> float | None:
        return None if value is None else float(f"{value:.4g}")

    rows = summarize(metrics)
    columns = {"metric": [s.name for s in rows]}
    for field in ("value", "se", "ci_low", "ci_high", "floor", "baseline", "times_floor"):
        columns[field] = [short(getattr(s, field)) for s in rows]
    return {**columns, "step": [step] * len(rows)}


def evaluation_record(client, run_id: str) -> dict[str, Any]:
    """The run's ``evaluation/eval.json`` (all metric values and statistics, the protocol and
    memorization); {} when the run was not evaluated."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, EVAL_RECORD, tmp)
        except (MlflowException, OSError):
            return {}
        return json.loads(Path(local).read_text())
