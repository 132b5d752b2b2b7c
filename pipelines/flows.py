"""The retrain flow: data → prepare → train → evaluate → register and gate.

Each task is one call into ganpkg or the tracking code. Retries sit where they help: data sync
and registry I/O retry with backoff; the train task, retried after a crash, resumes from its
last checkpoint (same run_dir), so a retry costs only the steps since that checkpoint.
The data stage holds the workspace lock and registration the registry's exclusion
(pipelines/policy.py), so two flows cannot collide in DVC or race the champion alias; a killed
holder frees both.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from ganpkg.config import Config, load_config
from ganpkg.errors import is_interrupt, is_permanent
from pipelines import data as data_glue
from pipelines.faults import FaultOnce, injected_fault_step, pause_point
from pipelines.flow_logs import send_ganpkg_logs_to_prefect
from pipelines.policy import registry_slot, workspace_lock
from pipelines.resume import mark_stage
from pipelines.timing import StageClock


def transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry what a second try can fix, not bad input or a full
    disk (those go straight to the command line's one line)."""
    try:
        err = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001  no readable result: let Prefect retry as configured
        return True
    return not (isinstance(err, BaseException) and is_permanent(err))


# -- tasks: thin wrappers, one library call each ------------------------------------------------
@task(retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=transient)
def sync_data(config: Config) -> str:
    """data/ from the source (or the DVC remote), verified against the committed data.dvc."""
    return data_glue.sync(config.data)


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=transient)
def prepare_data(config: Config) -> dict[str, Any]:
    """`dvc repro` of what the data supports (skipped by DVC when nothing changed), `dvc push`,
    then the data lineage."""
    data_glue.repro_for(config)
    data_glue.push()
    return data_glue.data_lineage()


@task
def should_train(config: Config, lineage: dict[str, Any], force: bool) -> tuple[bool, str]:
    """Policy: always, or only when the data version or the config changed since the champion."""
    from pipelines.policy import champion_changes

    if force or config.schedule.policy == "always":
        return True, "forced" if force else "policy: always"
    return champion_changes(config, lineage)


@task(retries=1, retry_delay_seconds=1, retry_condition_fn=transient)
def train_model(config: Config, flow_run_id: str | None, lineage: dict[str, Any],
                fault_at_step: int | None = None, parent_run_id: str | None = None,
                run_name: str | None = None, isolate: bool = False) -> dict[str, Any]:
    """Train (resuming from run_dir's last checkpoint on a retry), logging to MLflow.

    ``train.nproc_per_node`` > 1 trains under torchrun; ``isolate`` trains in a child process
    even with one (a sweep's parallel trials). ``parent_run_id`` nests the MLflow run.
    """
    from ganpkg.training import train
    from pipelines.tracking import MlflowTracker

    tracker = MlflowTracker(config, flow_run_id=flow_run_id, data_lineage=lineage,
                            parent_run_id=parent_run_id, run_name=run_name)
    if isolate or config.train.nproc_per_node > 1:
        from pipelines.train_worker import launch

        try:
            return launch(config, tracker, flow_run_id, lineage, fault_at_step)
        except BaseException as err:
            # interrupted: the group is stopped; close the run it had started
            if is_interrupt(err) and tracker.run_id is not None:
                close_run(tracker, "KILLED", Path(config.train.run_dir))
            raise
    from ganpkg.evaluation.progress import progress_callbacks

    callbacks = [tracker, *progress_callbacks(config, [tracker])]  # the FID curve
    if fault_at_step is not None:
        callbacks.append(FaultOnce(fault_at_step, Path(config.train.run_dir)))
    try:
        result = train(config, callbacks)
    except BaseException as err:
        close_run(tracker, "KILLED" if is_interrupt(err) else "FAILED",
                  Path(config.train.run_dir))
        raise
    return {"run_id": tracker.run_id, "checkpoint": str(result.checkpoint), "step": result.step}


def close_run(tracker, status: str, run_dir: Path) -> None:
    """End the MLflow run of a training that raised; a failure here is logged, never raised:
    it would replace the training's own exception (and turn an interrupt into a retry)."""
    try:
        tracker.on_end(status, run_dir)
    except Exception as err:  # noqa: BLE001
        get_run_logger().warning("could not mark the MLflow run %s: %s", status, err)


@task
def evaluate_model(config: Config, trained: dict[str, Any]) -> dict[str, Any]:
    """torch-fidelity metrics and the memorization check of the EMA generator; logged to MLflow."""
    from ganpkg.evaluation.fidelity import evaluate_checkpoint
    from pipelines.eval_record import log_evaluation

    pause_point("evaluate")
    out_dir = Path(config.train.run_dir) / "evaluation"
    result, info = evaluate_checkpoint(trained["checkpoint"], config, out_dir=out_dir)
    summary = result.as_dict()
    log_evaluation(trained["run_id"], summary["metrics"], summary["protocol"],
                   summary.get("memorization"), step=info["step"],
                   files=sorted(out_dir.glob("*")))
    return summary


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=transient)
def register_model(config: Config, trained: dict[str, Any], evaluated: dict[str, Any]) -> dict:
    """A model version of the EMA generator, gated to @champion or @challenger."""
    from pipelines.registration import register_run

    pause_point("register")
    with registry_slot():
        reg = register_run(trained["run_id"], trained["checkpoint"], evaluated["metrics"],
                           evaluated["protocol"], config, chosen=trained.get("chosen"))
    return {"name": reg.name, "version": reg.version, "model_uri": reg.model_uri,
            **asdict(reg.decision)}


# -- the flow ------------------------------------------------------------------------------------
def resolve_run_config(config_path: str | None, overrides: list[str], run_key: str) -> Config:
    """params.yaml + overrides, with a run_dir of its own for this flow run; ``auto`` choices
    made where the data is prepared already (retrain makes them again after preparing it)."""
    from ganpkg.evaluation.extractors import resolve_auto

    data_glue.refuse_dvc_overrides(overrides)  # also for runs started through the API
    config = load_config(config_path, overrides)
    if not any(o.startswith("train.run_dir=") for o in overrides):
        config.train.run_dir = str(Path(config.train.run_dir).parent / config.name / run_key)
    return resolve_auto(config)


@flow(name="retrain", log_prints=True)
def retrain(config_path: str | None = "params.yaml", overrides: list[str] | None = None,
            force: bool = False) -> dict[str, Any]:
    """Data → prepare → train → evaluate → register and gate, with change detection.

    Args:
        config_path: The params file, relative to the project folder (params.yaml).
        overrides: section.key=value items on top of it, e.g. train.total_steps=3000. Keys
            DVC's stages read (data.*, eval.selfsup.*, eval.domain.*) are refused: edit the params file.
        force: Retrain even if the data and the result-affecting params are the champion's.
    """
    fault_at_step = injected_fault_step()
    clock = StageClock()  # from the flow's start: its own overhead is what stages leave
    logger = get_run_logger()
    send_ganpkg_logs_to_prefect()  # training's step lines in this flow run's logs
    run_key = flow_run.get_name() or time.strftime("%Y%m%d-%H%M%S")
    config = resolve_run_config(config_path, overrides or [], run_key)
    check_ready(config)  # offline weights, gate metric: fail before any work
    with clock("data"), flow_stage(None, "data"):
        lineage = sync_and_prepare(config)
    check_ready(config)  # the extractor eval.extractor=auto picked for this data, now trained
    go, reason = should_train(config, lineage, force)
    if not go:
        logger.info("nothing changed: %s", reason)
        create_markdown_artifact(f"# retrain: nothing changed\n\n{reason}\n",
                                 key="retrain-report", description="retrain skipped")
        return {"status": "skipped", "reason": reason}
    config = claim_run_dir(config, explicit=any(o.startswith("train.run_dir=")
                                                for o in overrides or []))
    run_dir = Path(config.train.run_dir)
    with clock("train"), flow_stage(run_dir, "train"):
        # One name for the flow run, its run directory and its MLflow run.
        trained = train_model(config, str(flow_run.get_id()), lineage, fault_at_step,
                              run_name=run_dir.name)
    with clock("evaluate"), flow_stage(run_dir, "evaluate", trained["run_id"]):
        trained = chosen_checkpoint(config, trained)
        evaluated = evaluate_model(config, trained)
    with clock("register"), flow_stage(run_dir, "register", trained["run_id"]):
        registered = register_model(config, trained, evaluated)
        mlflow_url = publish_report(config, trained, evaluated, registered, clock)
    end_mlflow_run(trained["run_id"], "FINISHED")
    mark_stage(run_dir, "done")
    from pipelines.registry import write_champion_metrics

    write_champion_metrics(config.registry.model_name)  # `dvc metrics show`: the champion's
    return {"status": "trained", "reason": reason, **registered,
            "run_id": trained["run_id"], "mlflow_url": mlflow_url, "metrics": evaluated["metrics"],
            "seconds": {**clock.seconds, "flow": clock.total()}}


def chosen_checkpoint(config: Config, trained: dict[str, Any]) -> dict[str, Any]:
    """``trained`` pointing at the checkpoint the flow evaluates and registers: the FID curve's
    best step where it beats the last beyond noise, else the last (progress.choose_checkpoint);
    why is logged and becomes the version's tag ``checkpoint.chosen``."""
    from ganpkg.evaluation.progress import choose_checkpoint

    choice = choose_checkpoint(Path(config.train.run_dir), Path(trained["checkpoint"]),
                               int(trained["step"]), config.registry.primary_metric)
    get_run_logger().info("evaluating step %d: %s", choice.step, choice.reason)
    return {**trained, "checkpoint": str(choice.checkpoint), "step": choice.step,
            "chosen": choice.reason}


# What an interrupt left, by the stage it hit (the command line prints it; one flow per process).
INTERRUPTED = {
    "data": "interrupted in the data stage: nothing was trained; run the same command again",
    "train": "interrupted: the MLflow run is marked KILLED; run the same command again to "
             "resume from the last checkpoint",
    "evaluate": "interrupted during evaluation: the MLflow run is marked KILLED; run the same "
                "command again to evaluate and register the trained checkpoint (no retraining)",
    "register": "interrupted during registration: the MLflow run is marked KILLED; run the "
                "same command again to finish registering the trained checkpoint (no "
                "retraining)",
}
_stage = ["train"]  # the stage the flow of this process is in


def interrupted_message() -> str:
    return INTERRUPTED[_stage[0]]


@contextmanager
def flow_stage(run_dir: Path | None, stage: str, run_id: str | None = None):
    """Enter a flow stage: recorded in run_dir (an interrupted flow resumes from it) and for
    the interrupt message. From evaluation on, the MLflow run (training closed it) is
    RUNNING again until the flow ends, and KILLED or FAILED when the stage raises."""
    _stage[0] = stage
    if run_dir is not None:
        mark_stage(run_dir, stage)
    if run_id is not None:
        end_mlflow_run(run_id, "RUNNING")
    try:
        yield
    except BaseException as err:
        if run_id is not None:
            end_mlflow_run(run_id, "KILLED" if is_interrupt(err) else "FAILED")
        raise


def end_mlflow_run(run_id: str, status: str) -> None:
    """Set the MLflow run's status (RUNNING reopens it); a store failure here is logged, never
    raised: it would replace the stage's own exception."""
    from pipelines.tracking import get_client

    try:
        client = get_client()
        if status == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status)
    except Exception as err:  # noqa: BLE001
        get_run_logger().warning("could not mark the MLflow run %s: %s", status, err)


def claim_run_dir(config: Config, explicit: bool) -> Config:
    """Where this flow run trains: an interrupted run of the same config and data (resumed:
    its checkpoint and MLflow run continue; see pipelines/resume.py), else its own directory.
    Either is claimed for this process, so two flows never train in one directory."""
    from ganpkg.data.prepared import open_prepared
    from ganpkg.errors import UserError
    from ganpkg.training import data_md5
    from pipelines.resume import claim, resume_interrupted

    if not explicit:
        md5 = data_md5(open_prepared(config.data.prepared_dir))
        found = resume_interrupted(config, Path(config.train.run_dir).parent, md5)
        if found is not None:
            get_run_logger().info("resuming the interrupted run in %s", found)
            config.train.run_dir = str(found)
            return config
    if not claim(config.train.run_dir):
        raise UserError(f"train.run_dir {config.train.run_dir}: another process is training "
                        f"there; wait for it or choose another train.run_dir")
    return config


def sync_and_prepare(config: Config) -> dict[str, Any]:
    """The data stage under the workspace lock (DVC locks the workspace); its lineage."""
    with workspace_lock():
        pause_point("data")
        sync_data(config)
        return prepare_data(config)


def check_ready(config: Config) -> None:
    """Everything that would fail late, checked before training starts."""
    from ganpkg.evaluation.extractors import check_eval_ready, resolve_auto

    resolve_auto(config)
    check_eval_ready(config)
    config.check_gate_metric()


def publish_report(config: Config, trained: dict, evaluated: dict, registered: dict,
                   clock: StageClock) -> str:
    """Prefect artifacts: a markdown report and a metrics table; the run carries the links.
    Returns the MLflow run's URL."""
    from pipelines.tracking import get_client

    client = get_client()
    run = client.get_run(trained["run_id"])
    url, local = mlflow_run_url(client.tracking_uri, run.info.experiment_id, run.info.run_id)
    create_link_artifact(url, link_text=f"MLflow run {run.info.run_name}", key="mlflow-run",
                         description="the run in the MLflow UI"
                                     + (" (start it with `make ui`)" if local else ""))
    rows = [{"metric": k, "value": round(v, 4)} for k, v in sorted(evaluated["metrics"].items())]
    create_table_artifact(rows, key="retrain-metrics", description="evaluation metrics")
    lines = [
        f"# retrain: {registered['name']} v{registered['version']} → @{registered['alias']}",
        "",
        f"**Decision:** {registered['reason']}",
        f"**Compared with:** {registered.get('compared_with') or '(no champion before)'}",
        f"**MLflow run:** [{run.info.run_name}]({url})" + (" (`make ui` first)" if local else ""),
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {r['metric']} | {r['value']} |" for r in rows],
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in clock.seconds.items()],
        f"| flow so far (all of the above and Prefect's own work) | {clock.total():.1f} |",
    ]
    create_markdown_artifact("\n".join(lines), key="retrain-report",
                             description="retrain report")
    from prefect.settings import get_current_settings

    # Only a configured server keeps its UI: the temporary one of `ganpkg run` stops at exit,
    # and its link would be dead in MLflow forever.
    if get_current_settings().api.url and flow_run.get_flow_run_ui_url():
        client.set_tag(trained["run_id"], "prefect.flow_run_url",
                       str(flow_run.get_flow_run_ui_url()))
    return url


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> tuple[str, bool]:
    """(the run's page in the MLflow UI, whether that UI is `make ui` over the local store)."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}", False
    return f"http://127.0.0.1:5000/{page}", True
