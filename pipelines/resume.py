"""Interrupted runs: the next `ganpkg run` of the same config resumes them, others are closed.

A run directory is *unfinished* when it holds a checkpoint and its status.json is absent (kill
-9, a power cut) or KILLED (SIGTERM/Ctrl-C), or when its training FINISHED but the flow that
trained it stopped before registering it (flow.json's stage is not ``done``): resuming that
one trains no step, and evaluates and registers the checkpoint it has. Before training, the flow claims the newest
unfinished directory whose model and result-affecting train keys equal its own and that was
trained on the same prepared data, and trains there: training resumes from its checkpoint and
the tracker continues its MLflow run. Unfinished directories that cannot be resumed get their
MLflow run closed (KILLED, with the reason as a tag) and a status.json saying why, so no run
stays RUNNING forever.

A claim is an OS file lock held for the life of the process: a run still training in another
process is never touched, and the kernel releases the lock of a killed one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from ganpkg import checkpoint as ckpt
from ganpkg.config import Config, RegistryConfig
from ganpkg.files import write_atomic

CLAIM_FILE = ".ganpkg-claim.lock"
FLOW_FILE = "flow.json"  # the retrain flow's stage in this directory: train … register, done
_claims: dict[str, FileLock] = {}  # held until the process exits
_log = logging.getLogger("ganpkg.resume")


def claim(run_dir: str | Path) -> bool:
    """Hold ``run_dir``'s claim for this process; False when another process holds it."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _claims:  # another flow of this process (threads) trains there
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / CLAIM_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    _claims[key] = lock
    return True


def release(run_dir: str | Path) -> None:
    lock = _claims.pop(str(Path(run_dir).resolve()), None)
    if lock is not None:
        lock.release()


def _status(run_dir: Path) -> str | None:
    from ganpkg.training import read_status

    return read_status(run_dir).get("status")


def mark_stage(run_dir: str | Path, stage: str, message: str = "") -> None:
    """Record the flow's stage in ``run_dir`` (read by ``unfinished``)."""
    body = {"stage": stage, **({"message": message} if message else {})}
    write_atomic(Path(run_dir) / FLOW_FILE, lambda f: f.write(json.dumps(body).encode()))


def read_stage(run_dir: Path) -> str | None:
    """The flow's last recorded stage; None for a directory no flow marked (`ganpkg train`,
    sweep trials, runs from before stages were recorded)."""
    try:
        return json.loads((run_dir / FLOW_FILE).read_text()).get("stage")
    except (OSError, ValueError):
        return None


def _unfinished(run_dir: Path) -> bool:
    status = _status(run_dir)
    if status == "FINISHED":  # trained; unfinished while its flow never got to "done"
        return read_stage(run_dir) not in (None, "done", "closed")
    return status in (None, "KILLED")


def unfinished(root: Path) -> list[Path]:
    """Run directories under ``root`` with a checkpoint and no final state, newest first."""
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir()
             and ckpt.latest_checkpoint(d / "checkpoints") is not None and _unfinished(d)]
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def why_not_resumable(run_dir: Path, config: Config, data_md5: str) -> str | None:
    """None when ``config`` can continue ``run_dir``; otherwise the reason."""
    from ganpkg.training import result_differences

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        diffs = result_differences(saved, config)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return "its config.yaml is missing or unreadable"
    if diffs:
        return f"trained with other {', '.join(diffs)}"
    try:
        state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir / "checkpoints"))
    except ValueError as err:  # UserError: unreadable checkpoint
        return str(err)
    if state.get("data_md5") not in (None, data_md5):
        return "trained on other data"
    return None


def close_stale(run_dir: Path, reason: str, registry: RegistryConfig | None = None) -> None:
    """Mark an unresumable run finished: its MLflow run KILLED, with why; a version its flow
    registered but did not gate (killed in between) is gated now with ``registry``, so no
    version stays undecided. A trained run keeps status.json FINISHED (flow.json: closed)."""
    from ganpkg.training import write_status
    from pipelines.tracking import RUN_ID_FILE, get_client

    message = f"interrupted and not resumed: {reason}"
    marker = run_dir / RUN_ID_FILE
    if marker.is_file():
        from mlflow.exceptions import MlflowException

        saved = json.loads(marker.read_text())
        client = get_client(saved.get("tracking_uri"))
        try:
            if client.get_run(saved["run_id"]).info.status == "RUNNING":
                client.set_tag(saved["run_id"], "ganpkg.closed_reason", message)
                client.set_terminated(saved["run_id"], "KILLED")
            if registry is not None:
                gate_undecided(client, saved["run_id"], registry)
        except MlflowException:
            pass  # the run is gone from that store: nothing to close
    if _status(run_dir) == "FINISHED":
        mark_stage(run_dir, "closed", message)
        return
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    write_status(run_dir, "KILLED", int(latest.stem.split("-")[1]) if latest else 0, message)


def gate_undecided(client, run_id: str, registry: RegistryConfig) -> list[str]:
    """Gate the versions registered from ``run_id`` that carry no gate decision; their numbers."""
    from mlflow.exceptions import MlflowException

    from pipelines.registry import apply_gate

    name = registry.model_name
    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:  # no such registered model
        return []
    undecided = [str(v.version) for v in found if "gate.decision" not in v.tags]
    for version in undecided:
        decision = apply_gate(client, name, version, registry)
        _log.warning("%s v%s, registered by a killed run, gated now: @%s", name, version,
                     decision.alias)
    return undecided


def resume_interrupted(config: Config, root: Path, data_md5: str) -> Path | None:
    """Claim and return an unfinished run directory ``config`` can continue (closing the
    unresumable ones on the way), or None. The caller trains in the returned directory."""
    for run_dir in unfinished(root):
        if not claim(run_dir):
            continue  # another process is training there
        reason = why_not_resumable(run_dir, config, data_md5)
        if reason is None:
            return run_dir
        _log.warning("closing interrupted run %s: %s", run_dir, reason)
        close_stale(run_dir, reason, config.registry)
        release(run_dir)
    return None
