"""train.nproc_per_node=2: the train task launches torchrun, and rank 0 logs to the task's run.

Two gloo ranks on CPU need a BatchNorm-free model (SyncBatchNorm runs on CUDA only); the
BatchNorm config is the failure case: the ranks refuse it and the task reports why.
"""

import pytest

from ganpkg.checkpoint import load_checkpoint
from ganpkg.data.prepare import prepare
from pipelines.flows import resolve_run_config, train_model
from pipelines.tracking import get_client
from pipelines.train_worker import RESULT_FILE

TWO_RANKS = ["train.nproc_per_node=2"]
NO_BN = ["model.g_norm=none", "model.d_norm=none", "model.spectral_norm=true",
         "train.r1_gamma=0"]
LINEAGE = {"data_dvc_md5": "test-data", "prepared_md5": "test-prepared"}


def test_two_ranks_train_and_log_to_the_tasks_mlflow_run(project):
    config = resolve_run_config("params.yaml", TWO_RANKS + NO_BN, "ddp")
    prepare(config.data)
    trained = train_model.fn(config, "flow-run-1", LINEAGE)

    assert trained["step"] == config.train.total_steps == 12
    state = load_checkpoint(trained["checkpoint"])
    assert state["step"] == 12 and state["world_size"] == 2  # both ranks were in the group
    client = get_client()
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    assert {"train/loss_d", "train/loss_g", "train/checkpoint_step"} <= set(run.data.metrics)
    assert run.data.params["train.nproc_per_node"] == "2"
    assert run.data.tags["prefect.flow_run_id"] == "flow-run-1"
    assert run.data.tags["data.dvc_md5"] == "test-data"
    assert run.data.tags["checkpoint.latest"] == trained["checkpoint"]
    # Only rank 0 logs: one value per logged step.
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_d")]
    assert steps == list(range(2, 13, 2))
    assert (project / config.train.run_dir / RESULT_FILE).is_file()


def test_failing_ranks_fail_the_run_and_the_task_says_why(project):
    config = resolve_run_config("params.yaml", TWO_RANKS, "bn")  # BatchNorm: refused on CPU
    prepare(config.data)
    with pytest.raises(RuntimeError, match="exited with code 1: .*UserError: .*g_norm=none"):
        train_model.fn(config, None, LINEAGE)
    client = get_client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["train.status"] == "FAILED"
