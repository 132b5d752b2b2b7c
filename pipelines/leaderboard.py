"""Runs and model versions side by side: ``mlflow.search_runs`` as a pandas table.

One row per run of the ``ganpkg-*`` experiments: quality metrics (named by what measured them),
the protocol they were measured with, data version, code, and the registered versions with their
aliases. Sortable by any metric; best first in the metric's own direction.
"""

from __future__ import annotations

import json
from pathlib import Path

from ganpkg import metrics
from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import PACKED_TAG, TAG_PREFIX
from pipelines.eval_record import evaluation_record
from pipelines.registry_load import using_tracking_uri
from pipelines.tracking import EVAL, get_client

TAG_COLUMNS = {  # tag → column
    "eval.extractor": "extractor", "eval.n_samples": "eval_n", "eval.reference_split": "ref_split",
    "eval.reference_md5": "ref_md5", "data.dvc_md5": "data_md5",
    "data.prepared_md5": "prepared_md5", "git.commit": "commit", "git.dirty": "dirty",
    "ganpkg.params_hash": "params_hash", "ganpkg.recipe_hash": "recipe", "ganpkg.seed": "seed",
    "prefect.flow_run_id": "flow_run", "device": "device",
}
SHORT = {"ref_md5", "data_md5", "prepared_md5", "commit", "flow_run"}  # hashes: first 8 chars


def _protocol(text) -> dict:
    """A run's packed ``eval.protocol`` tag as a dict ({} when absent or not ours)."""
    try:
        return {k: None if v is None else str(v) for k, v in json.loads(text).items()}
    except (TypeError, ValueError, AttributeError):
        return {}


def is_quality_metric(name: str) -> bool:
    """A name of the metric vocabulary (``fid_domain``, ``is_inception_se``, ...)."""
    return metrics.parse(name) is not None


def _versions_by_run(client, model_name: str) -> dict[str, list[tuple[str, list[str]]]]:
    """run id → [(version, aliases)] (search results carry no aliases: read them from the model)."""
    from mlflow.exceptions import MlflowException

    try:
        with using_tracking_uri(client.tracking_uri):
            found = client.search_model_versions(f"name = '{model_name}'")
            aliases = client.get_registered_model(model_name).aliases
    except MlflowException:
        return {}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out: dict[str, list] = {}
    for mv in sorted(found, key=lambda mv: int(mv.version)):
        version = str(mv.version)
        out.setdefault(mv.run_id, []).append((version, sorted(by_version.get(version, []))))
    return out


def leaderboard(tracking_uri: str | None = None, model_name: str = "ganpkg-generator",
                sort_by: str | None = None, ascending: bool | None = None,
                max_results: int = 1000):
    """A DataFrame of runs (and their model versions), best ``sort_by`` first.

    ``sort_by`` is a metric name (``fid_domain``) or any column; without it, the first FID
    column, else the start time (newest first).
    """
    import mlflow
    import pandas as pd

    client = get_client(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()
                   if e.name.startswith("ganpkg-")]
    if not experiments:
        return pd.DataFrame(columns=["run_id", "run_name", "status"])
    with using_tracking_uri(client.tracking_uri):
        runs = mlflow.search_runs(experiment_ids=experiments, max_results=max_results,
                                  output_format="pandas")
    table = pd.DataFrame({"run_id": runs["run_id"].str[:8],
                          "run_name": runs.get("tags.mlflow.runName"),
                          "status": runs["status"], "start": runs["start_time"]})
    prefix = f"metrics.{EVAL}"  # evaluation metrics; train/ and system/ are not quality
    charted = {c[len(prefix):] for c in runs.columns
               if c.startswith(prefix) and is_quality_metric(c[len(prefix):])}
    # The statistics beside each value (se, interval, floor, baseline, spreads) are not run
    # metrics: they come from each evaluated run's evaluation/eval.json.
    evaluated = runs[[prefix + name for name in charted]].notna().any(axis=1) if charted \
        else pd.Series(False, index=runs.index)
    records = [evaluation_record(client, run_id).get("metrics", {}) if done else {}
               for run_id, done in zip(runs["run_id"], evaluated, strict=True)]
    recorded = {k for record in records for k in record if is_quality_metric(k)}
    for name in sorted(charted | recorded):
        from_runs = runs[prefix + name] if name in charted else pd.Series(None, index=runs.index)
        table[name] = [value if pd.notna(value) else record.get(name)
                       for value, record in zip(from_runs, records, strict=True)]
    protocols = [_protocol(text) for text in runs.get(f"tags.{PACKED_TAG}", [None] * len(runs))]
    for tag, column in TAG_COLUMNS.items():
        values = runs.get(f"tags.{tag}")
        if tag.startswith(TAG_PREFIX):  # the packed protocol first: a field tag may be stale
            field = tag.removeprefix(TAG_PREFIX)
            old = values if values is not None else pd.Series(None, index=runs.index)
            values = pd.Series([p[field] if p.get(field) is not None else o
                                for p, o in zip(protocols, old, strict=True)],
                               index=runs.index, dtype=object)
        if values is not None and values.notna().any():
            table[column] = values.str[:8] if column in SHORT else values
    add_seed_spread(table)
    by_run = _versions_by_run(client, model_name)
    table["versions"] = [",".join(v for v, _ in by_run.get(r, [])) for r in runs["run_id"]]
    table["aliases"] = [",".join(f"{a}=v{v}" for v, names in by_run.get(r, []) for a in names)
                        for r in runs["run_id"]]
    return sort_table(table, sort_by, ascending)


def add_seed_spread(table) -> None:
    """``<metric>_seed_sd``: the sd of each FID/KID/IS value over the runs of the same recipe
    (params but the seed), where a recipe has two seeds or more: how much of a gap between two
    rows a reseed alone would give."""
    if "recipe" not in table.columns:
        return
    for name in [c for c in table.columns if (p := metrics.parse(c)) and p.qualifier is None
                 and p.metric.gateable]:
        sd = table.groupby("recipe")[name].transform(lambda v: v.std() if v.count() > 1 else None)
        table[f"{name}_seed_sd"] = sd


def sort_table(table, sort_by: str | None, ascending: bool | None):
    """Sort by a column (``metrics.`` prefix optional), in the metric's better direction."""
    if sort_by is None:
        fids = [c for c in table.columns if (p := metrics.parse(c)) and p.metric.stem == "fid"
                and p.qualifier is None]
        if not fids:
            return table.sort_values("start", ascending=False).reset_index(drop=True)
        sort_by = fids[0]
    sort_by = sort_by.removeprefix("metrics.")
    if sort_by not in table.columns:
        quality = [c for c in table.columns if is_quality_metric(c)]
        raise UserError(f"--sort {sort_by}: no such metric; available: "
                        f"{', '.join(quality) or 'none (nothing evaluated yet)'}, or a column: "
                        f"{', '.join(c for c in table.columns if c not in quality)}")
    if ascending is None:
        ascending = metrics.lower_is_better(sort_by)
    return table.sort_values(sort_by, ascending=ascending, na_position="last").reset_index(drop=True)


def write_csv(table, path: str | Path) -> Path:
    """The full table as CSV (hashes shortened as shown)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def format_table(table) -> str:
    """Plain-text table for a terminal (pandas' own formatting, all columns)."""
    import pandas as pd

    if table.empty:
        return "no ganpkg runs in this tracking store yet"
    with pd.option_context("display.max_columns", None, "display.width", 250,
                           "display.float_format", "{:.5g}".format):
        return table.drop(columns=["start"]).to_string(index=False)
