"""Hyperparameter sweeps: trials as parallel flow runs; the best one registered and gated.

``sweep`` syncs and prepares the data once, opens one parent MLflow run and runs every trial
as a ``trial`` flow run of its own (in Prefect 3 a flow called inside a task is a flow run of
its own, linked to that task); a thread pool of ``max_parallel`` bounds how many run at once.
A trial trains in a child process (``train_model(isolate=True)``: trials in threads of one
process would share torch's global RNG) and evaluates; its MLflow run is nested under the
parent (tag ``mlflow.parentRunId``). A failed trial is reported and the others go on; the
sweep fails only when every trial failed. The best trial by ``registry.primary_metric`` goes
through the retrain flow's registration and gate (``register_model``, under the registry's exclusion).

On a work pool: deploy this flow itself (``prefect deploy`` with entrypoint
``pipelines/sweep.py:sweep``); its trials then run as flow runs in the sweep's worker.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from rich.console import Console

from ganpkg.config import Config, RegistryConfig
from ganpkg.sweep import check_trials
from pipelines.flow_logs import send_ganpkg_logs_to_prefect
from pipelines.flows import (
    check_ready,
    evaluate_model,
    register_model,
    resolve_run_config,
    sync_and_prepare,
    train_model,
)
from pipelines.run_tags import data_tags, git_lineage
from pipelines.tracking import EVAL, RUN_ID_FILE, ensure_experiment, experiment_name, get_client


@flow(name="trial", log_prints=True)
def trial(config_path: str | None, overrides: list[str], run_key: str, parent_run_id: str,
          lineage: dict[str, Any]) -> dict[str, Any]:
    """One sweep trial: train (in a child process) and evaluate, nested under the parent run."""
    config = resolve_run_config(config_path, overrides, run_key)
    trained = train_model(config, str(flow_run.get_id()), lineage, parent_run_id=parent_run_id,
                          run_name=Path(run_key).name, isolate=True)
    evaluated = evaluate_model(config, trained)
    return {**trained, "metrics": evaluated["metrics"], "protocol": evaluated["protocol"]}


@task(task_run_name="trial-{index}")
def run_trial(index: int, config_path: str | None, overrides: list[str], label: str,
              run_key: str, parent_run_id: str, lineage: dict[str, Any],
              metric: str) -> dict[str, Any]:
    """Run one trial as a flow run of its own; its failure fails this task only."""
    print(f"trial {index} start: {label}")
    try:
        out = trial.with_options(flow_run_name=run_key.replace("/", "-"))(
            config_path, overrides, run_key, parent_run_id, lineage)
    except Exception as err:
        print(f"trial {index} FAILED: {label}: {_first_line(err)}")
        raise
    print(f"trial {index} end: {label}: {metric} {out['metrics'].get(metric, math.nan):.6g}")
    return out


@flow(name="sweep", log_prints=True)
def sweep(config_path: str | None = "params.yaml", trials: list[list[str]] | None = None,
          overrides: list[str] | None = None, max_parallel: int = 2) -> dict[str, Any]:
    """Each trial (its overrides on top of ``overrides``) trained and evaluated as parallel
    flow runs, ``max_parallel`` at a time; the best one registered and gated."""
    sweep_key = flow_run.get_name() or time.strftime("%Y%m%d-%H%M%S")
    send_ganpkg_logs_to_prefect()
    trials = [list(t) for t in trials or [[]]]
    check_trials(trials, overrides or [])
    specs = [[*(overrides or []), *t] for t in trials]
    configs = [resolve_run_config(config_path, spec, f"{sweep_key}/trial-{i}")
               for i, spec in enumerate(specs)]
    base = configs[0]
    check_ready(base)  # trials share eval and registry: one check holds for all
    lineage = sync_and_prepare(base)
    for config in configs:  # eval.extractor=auto: the prepared data now says which
        check_ready(config)
    metric = base.registry.primary_metric
    parent = open_parent_run(base, str(flow_run.get_id()), lineage, sweep_key, len(trials))
    print(f"sweep {sweep_key}: {len(trials)} trials, {max_parallel} at a time, best by {metric}")
    rows: list[dict[str, Any]] = []
    try:
        with ThreadPoolTaskRunner(max_workers=max_parallel) as runner:
            futures = [runner.submit(run_trial, {
                "index": i, "config_path": config_path, "overrides": spec,
                "label": " ".join(trials[i]) or "(base config)", "run_key": f"{sweep_key}/trial-{i}",
                "parent_run_id": parent, "lineage": lineage, "metric": metric})
                for i, spec in enumerate(specs)]
            rows, results = collect_trials(futures, trials, configs, metric)
        best = best_trial(rows, base.registry)
        if best is None:
            raise RuntimeError(f"all {len(rows)} trials failed; trial 0: {rows[0]['error']}")
        registered = register_model(configs[best], results[best], results[best])
    except BaseException:
        close_parent_run(parent, rows, None, metric, "FAILED")
        raise
    close_parent_run(parent, rows, best, metric, "FINISHED")
    return {"status": "trained", **registered, "best_trial": best, "parent_run_id": parent,
            "metric": metric,
            "run_id": results[best]["run_id"], "metrics": results[best]["metrics"],
            "trials": rows}


# -- helpers -----------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _run_id_in(run_dir: str) -> str:
    """The MLflow run a (failed) trial trained into, from its run_dir's marker."""
    marker = Path(run_dir) / RUN_ID_FILE
    return json.loads(marker.read_text())["run_id"] if marker.is_file() else ""


def collect_trials(futures: list, trials: list[list[str]], configs: list[Config],
                   metric: str) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """One table row per trial (finished or failed) and each finished trial's result."""
    rows, results = [], []
    for i, future in enumerate(futures):
        row = {"trial": i, "overrides": " ".join(trials[i]), "status": "finished",
               metric: None, "run_id": "", "error": ""}
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - any failure of a trial is reported, not fatal
            result = None
            row.update(status="failed", error=_first_line(err),
                       run_id=_run_id_in(configs[i].train.run_dir))
        else:
            value = result["metrics"].get(metric)
            finite = value is not None and math.isfinite(value)
            row.update({metric: float(value) if finite else None, "run_id": result["run_id"]})
        rows.append(row)
        results.append(result)
    return rows, results


def best_trial(rows: list[dict[str, Any]], cfg: RegistryConfig) -> int | None:
    """Index of the finished trial with the best primary metric (its direction), or None."""
    scored = [(r[cfg.primary_metric], r["trial"]) for r in rows
              if r["status"] == "finished" and r[cfg.primary_metric] is not None]
    if not scored:
        return None
    return (min(scored) if cfg.lower_is_better else max(scored))[1]


def open_parent_run(config: Config, flow_run_id: str, lineage: dict[str, Any], sweep_key: str,
                    n_trials: int) -> str:
    """The sweep's parent MLflow run (trials nest under it), tagged with the sweep's flow run."""
    client = get_client()
    exp = ensure_experiment(client, experiment_name(config))
    tags = {**git_lineage("."), **data_tags(".", lineage), "prefect.flow_run_id": flow_run_id,
            "sweep.trials": str(n_trials), "sweep.metric": config.registry.primary_metric}
    return client.create_run(exp, run_name=f"sweep-{sweep_key}", tags=tags).info.run_id


def close_parent_run(run_id: str, rows: list[dict[str, Any]], best: int | None, metric: str,
                     status: str) -> None:
    """Trials table (MLflow and Prefect), the best trial's run as a tag, the run's status."""
    client = get_client()
    if rows:
        client.log_table(run_id, {k: [r[k] for r in rows] for k in rows[0]}, "sweep/trials.json")
        create_table_artifact(rows, key="sweep-trials", description=(
            f"sweep trials; best by {metric}: trial {best}" if best is not None else
            "sweep trials; none finished"))
        failed = [str(r["trial"]) for r in rows if r["status"] == "failed"]
        client.set_tag(run_id, "sweep.failed_trials", ",".join(failed) or "none")
    if best is not None:
        client.set_tag(run_id, "sweep.best_trial", str(best))
        client.set_tag(run_id, "sweep.best_run_id", rows[best]["run_id"])
        client.log_metric(run_id, f"{EVAL}best_{metric}", rows[best][metric])
    client.set_terminated(run_id, status)


def print_sweep(outcome: dict[str, Any], console: Console) -> None:
    """Each trial's status and metric, then the registered best (as `ganpkg run` prints it)."""
    from pipelines.main import print_outcome

    for row in outcome["trials"]:
        value = row[outcome["metric"]]
        shown = f"{value:.4f}" if value is not None else row["error"] or "-"
        mark = " (best)" if row["trial"] == outcome["best_trial"] else ""
        console.print(f"trial {row['trial']} {row['status']:<8} {shown}  {row['overrides']}{mark}")
    print_outcome(outcome, console)
