"""The tags that trace a run (and the versions it makes) to code, data, params and environment.

Read once when a run starts (``MlflowTracker``, sweeps): git commit and dirty flag, the data
snapshot's and prepared data's md5, torch/CUDA/MLflow/Python versions and the device, the
config's hashes and seed, the Prefect flow run; and MLflow's own run-page fields.
"""

from __future__ import annotations

import getpass
import platform
import subprocess
import sys
from pathlib import Path

from ganpkg.config import Config


def git_output(repo: Path, *args: str) -> str | None:
    """stdout of ``git ARGS`` in ``repo``; None where git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_lineage(repo: str | Path = ".") -> dict[str, str]:
    """Commit and dirty flag of the code; tracked-file changes only (untracked files are
    outputs like mlflow.db far more often than code)."""
    repo = Path(repo)
    commit = (git_output(repo, "rev-parse", "HEAD") or "").strip() or "unknown"
    status = git_output(repo, "status", "--porcelain", "--untracked-files=no")
    dirty = "unknown" if status is None else str(bool(status.strip())).lower()
    return {"git.commit": commit, "git.dirty": dirty}


def source_tags(commit: str) -> dict[str, str]:
    """MLflow's own Source / Created by / commit fields of the run page (the client API, unlike
    mlflow.start_run, fills none of them)."""
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags

    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]) if sys.argv else "ganpkg"
    return {mlflow_tags.MLFLOW_SOURCE_NAME: command,
            mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.JOB),
            mlflow_tags.MLFLOW_USER: current_user(),
            mlflow_tags.MLFLOW_GIT_COMMIT: commit}


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container user without a name
        return "unknown"


def data_tags(repo: str | Path = ".", data_lineage: dict | None = None) -> dict[str, str]:
    """data.dvc md5 and prepared md5 (dvc.lock), from the flow's ``data_lineage()`` when given,
    else read from the two files (cheap: no ``dvc status`` subprocess)."""
    from pipelines.data import committed_data_md5, locked_stage

    if data_lineage is None:
        outs = locked_stage(repo).get("outs") or [{}]
        data_lineage = {"data_dvc_md5": committed_data_md5(repo)[0],
                        "prepared_md5": outs[0].get("md5")}
    tags = {"data.dvc_md5": str(data_lineage.get("data_dvc_md5") or "none"),
            "data.prepared_md5": str(data_lineage.get("prepared_md5") or "none")}
    if "workspace_clean" in data_lineage:
        tags["data.workspace_clean"] = str(bool(data_lineage["workspace_clean"])).lower()
    return tags


def environment_tags(device: str | None = None) -> dict[str, str]:
    """torch/CUDA versions and the device that trained."""
    import mlflow
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"torch.version": str(torch.__version__), "torch.cuda": str(torch.version.cuda),
            "torch.gpu": gpu, "env.mlflow": mlflow.__version__,
            "env.python": platform.python_version(),
            "device": device or ("cuda" if torch.cuda.is_available() else "cpu")}


def lineage_tags(config: Config, repo: str | Path = ".", flow_run_id: str | None = None,
                 data_lineage: dict | None = None, device: str | None = None) -> dict[str, str]:
    """Every tag that traces a run (and the model versions it makes) to code, data and params."""
    tags = {**git_lineage(repo), **data_tags(repo, data_lineage), **environment_tags(device),
            "ganpkg.params_hash": config.params_hash(), "ganpkg.seed": str(config.train.seed),
            "ganpkg.recipe_hash": config.recipe_hash(), "ganpkg.result_hash": config.result_hash(),
            "ganpkg.config_name": config.name}
    if flow_run_id:
        tags["prefect.flow_run_id"] = str(flow_run_id)
    return tags
