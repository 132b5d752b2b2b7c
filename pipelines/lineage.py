"""Where a registered generator (or a run) came from, and the commands that reproduce it.

``lineage("models:/ganpkg-generator@champion")`` follows version → run and collects the data
version (data.dvc md5, prepared md5), code (commit, dirty), params (and their hash), metrics with
their protocol, the Prefect flow run, the environment, and the reproduction commands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import EvalProtocol
from ganpkg.metrics import parse, summarize
from pipelines.eval_record import evaluation_record
from pipelines.tracking import EVAL, get_client

CONFIG_ARTIFACT = "config/config.yaml"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]+)(?:/.*)?$")


def resolve(client, uri: str) -> tuple[str, Any | None]:
    """(run id, model version or None) for models:/name@alias, models:/name/N, runs:/id or id."""
    from mlflow.exceptions import MlflowException

    try:
        if m := _MODELS_URI.match(uri):
            if m["alias"]:
                mv = client.get_model_version_by_alias(m["name"], m["alias"])
            else:
                mv = client.get_model_version(m["name"], m["version"])
            if not mv.run_id:
                raise UserError(f"{uri}: version {mv.version} records no run")
            return mv.run_id, mv
        run_id = m["run"] if (m := _RUNS_URI.match(uri)) else uri
        return client.get_run(run_id).info.run_id, None
    except MlflowException as err:
        raise UserError(f"{uri}: not found in {client.tracking_uri} ({str(err)[:160]}); expected "
                        "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID or a run id") from None


def _prefixed(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: v for k, v in sorted(tags.items()) if k.startswith(prefix)}


def reproduce_commands(uri: str, tags: dict[str, str], run_id: str) -> list[str]:
    """Shell commands that rebuild the generator: code, data, config, training."""
    device = "cuda" if tags.get("device", "cpu").startswith("cuda") else "cpu"
    commands = [f"git checkout {tags.get('git.commit', '<commit>')}"]
    if tags.get("git.dirty") == "true":
        commands.append(f"mlflow artifacts download -r {run_id} -a git/diff.patch -d . "
                        "&& git apply git/diff.patch   # the run had uncommitted changes")
    commands += [
        f"dvc checkout data.dvc || dvc pull data.dvc   # data/ md5 {tags.get('data.dvc_md5')}",
        f"dvc repro prepare   # prepared/ md5 {tags.get('data.prepared_md5')}",
        f"ganpkg lineage {uri} --config-out reproduce.yaml",
        (f"ganpkg train --config reproduce.yaml --set train.run_dir=runs/reproduce-{run_id[:8]} "
        f"--set train.device={device}"),
    ]
    return commands


def lineage(uri: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """Everything that traces ``uri`` to code, data, params and evaluation (JSON-able)."""
    client = get_client(tracking_uri)
    run_id, mv = resolve(client, uri)
    run = client.get_run(run_id)
    tags = {**run.data.tags, **(mv.tags if mv else {})}
    out: dict[str, Any] = {"uri": uri, "tracking_uri": client.tracking_uri}
    if mv is not None:
        out["model"] = {"name": mv.name, "version": str(mv.version), "aliases": list(mv.aliases),
                        "source": mv.source, "gate": _prefixed(tags, "gate."),
                        "promotion": _prefixed(tags, "promotion."),
                        "rollback": _prefixed(tags, "rollback.")}
    out["run"] = {"id": run_id, "name": run.info.run_name, "status": run.info.status,
                  "experiment_id": run.info.experiment_id, "start_time_ms": run.info.start_time}
    out["code"] = {"commit": tags.get("git.commit"), "dirty": tags.get("git.dirty")}
    out["data"] = {"data_dvc_md5": tags.get("data.dvc_md5"),
                   "prepared_md5": tags.get("data.prepared_md5"),
                   "workspace_clean": tags.get("data.workspace_clean"),
                   "prepared_dir": run.data.params.get("data.prepared_dir")}
    out["params_hash"], out["seed"] = tags.get("ganpkg.params_hash"), tags.get("ganpkg.seed")
    out["recipe_hash"] = tags.get("ganpkg.recipe_hash")
    out["flow_run_id"] = tags.get("prefect.flow_run_id")
    out["environment"] = {k: tags.get(k) for k in ("torch.version", "torch.cuda", "torch.gpu",
                                                   "device", "env.mlflow", "env.python")}
    # Evaluation metrics by their own names (fid_domain), the others namespaced (train/loss_d);
    # the statistics beside each value (se, interval, floor, baseline) from eval.json.
    record = evaluation_record(client, run_id)
    out["metrics"] = dict(sorted({**{k.removeprefix(EVAL): v for k, v in run.data.metrics.items()},
                                  **record.get("metrics", {})}.items()))
    protocol = EvalProtocol.from_tags(tags)
    out["protocol"] = {k: "" if v is None else str(v)
                       for k, v in (protocol.as_dict() if protocol else {}).items()}
    out["memorization"] = record.get("memorization")
    out["params"] = dict(sorted(run.data.params.items()))
    out["reproduce"] = reproduce_commands(uri, tags, run_id)
    return out


def download_config(uri: str, dest: str | Path, tracking_uri: str | None = None) -> Path:
    """Write the resolved config the run trained with (its ``config/config.yaml``) to ``dest``."""
    import shutil
    import tempfile

    client = get_client(tracking_uri)
    run_id, _ = resolve(client, uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    return dest


def format_lineage(info: dict[str, Any], params: bool = True) -> str:
    """Human-readable lineage, one section per question a reviewer asks."""
    lines: list[str] = []
    model = info.get("model")
    if model:
        aliases = ", ".join(model["aliases"]) or "none"
        lines += [f"model      {model['name']} v{model['version']}  (aliases: {aliases})",
                  (f"gate       {model['gate'].get('decision', '?')}: "
                  f"{model['gate'].get('reason', '')}")]
        if model["promotion"]:
            lines.append(f"promotion  manual: {model['promotion'].get('reason')}")
    run = info["run"]
    lines += [f"run        {run['id']}  {run['name']}  {run['status']}",
              f"code       commit {info['code']['commit']}  dirty={info['code']['dirty']}",
              (f"data       data.dvc md5 {info['data']['data_dvc_md5']}  prepared md5 "
              f"{info['data']['prepared_md5']}  ({info['data']['prepared_dir']})"),
              (f"params     hash {info['params_hash']}  seed {info['seed']}  recipe "
               f"{info.get('recipe_hash')}"),
              f"flow run   {info['flow_run_id'] or 'none (not run by Prefect)'}",
              "env        " + "  ".join(f"{k}={v}" for k, v in info["environment"].items())]
    lines.append("metrics    (± standard error [interval]; floor: real vs real; baseline: at init)")
    summaries = summarize(info["metrics"])
    lines += [f"  {summary.describe()}" for summary in summaries]
    shown = {summary.name for summary in summaries}
    lines += [f"  {k} = {v:.6g}" for k, v in info["metrics"].items()
              if (parsed := parse(k)) is None or parsed.value_name not in shown]
    if info.get("memorization"):
        mem = info["memorization"]
        lines.append("memorized   " + "  ".join(f"{k}={v:.4g}" for k, v in mem.items()
                                               if isinstance(v, int | float)))
    if info["protocol"]:
        lines.append("protocol   " + "  ".join(f"{k}={v[:16]}" for k, v in
                                               info["protocol"].items()))
    if params:
        lines.append("params")
        lines += [f"  {k} = {v}" for k, v in info["params"].items()]
    lines.append("reproduce")
    lines += [f"  {cmd}" for cmd in info["reproduce"]]
    return "\n".join(lines)


def lineage_json(info: dict[str, Any]) -> str:
    """The lineage as indented JSON (machine-readable)."""
    return json.dumps(info, indent=2, sort_keys=False, default=str)
