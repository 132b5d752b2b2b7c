"""DVC glue for the data stage: verify the raw snapshot, reproduce `prepare`, push, lineage.

ganpkg never imports DVC; this module drives the ``dvc`` executable by subprocess (the one
installed beside this Python), so a flow task is one call here. Order of one retrain:

    ganpkg data ingest  →  verify_raw_snapshot()  →  repro_prepare()  →  push()

``verify_raw_snapshot`` must come before ``dvc repro``: repro silently rewrites ``data.dvc``
when ``data/`` changed, which would hide a snapshot that no longer matches the committed one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ganpkg.config import Config, DataConfig
from ganpkg.errors import UserError
from ganpkg.files import hash_bytes, hash_file

_log = logging.getLogger("ganpkg.data")


class DataLineageError(UserError):
    """The workspace data does not match what git records (data.dvc / dvc.lock)."""


def _dvc_exe() -> str:
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else "dvc"


def _env() -> dict[str, str]:
    # dvc.yaml's `python -m pipelines ...` must resolve to this interpreter's environment.
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_dvc(args: list[str], repo: str | Path = ".", check: bool = True) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``repo``; on failure raise with DVC's own message."""
    proc = subprocess.run([_dvc_exe(), *args], cwd=repo, env=_env(), text=True, check=False,
                          capture_output=True)
    if check and proc.returncode != 0:
        raise _dvc_failed(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def _dvc_failed(args: list[str], code: int, output: str) -> RuntimeError:
    """DVC's failure with the last lines of what it said."""
    tail = [line.strip() for line in output.splitlines() if line.strip()][-5:]
    return RuntimeError(f"dvc {' '.join(args)} failed (exit {code}): " + " | ".join(tail))


def dir_md5(path: str | Path) -> str:
    """DVC 3's md5 of a directory (``<md5>.dir``), computed without DVC.

    DVC hashes the JSON list of ``{"md5", "relpath"}`` entries sorted by relpath; tests check
    this against ``dvc add``. (It ignores nothing here: data/ and prepared/ hold no
    .dvcignore'd files.)
    """
    root = Path(path)
    entries = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            file = Path(dirpath, name)
            entries.append({"md5": hash_file(file, "md5"),
                            "relpath": file.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hash_bytes(json.dumps(entries, sort_keys=True).encode(), "md5") + ".dir"


def _load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def dvc_params(repo: str | Path = ".") -> set[str]:
    """The params.yaml keys DVC's stages read (dvc.yaml's ``params`` lists)."""
    stages = (_load_yaml(Path(repo, "dvc.yaml")).get("stages") or {}).values()
    return {key for stage in stages for key in stage.get("params", []) if isinstance(key, str)}


def refuse_dvc_overrides(overrides: list[str], repo: str | Path = ".") -> None:
    """``--set`` of a key DVC reads from params.yaml would record one value and train on data
    made with another (``dvc repro`` never sees --set): refused in one line. Every ``data.*``
    key counts, since ingest and the committed data.dvc describe the data too."""
    read = dvc_params(repo) | {"data"}
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        hit = max((k for k in read if key == k or key.startswith(f"{k}.")), key=len, default=None)
        if hit is not None:
            what = "every data.* key" if hit == "data" else hit
            raise UserError(f"--set {key}: DVC's stages read {what} from params.yaml, not from "
                            f"--set, so the run would record one value and use data made "
                            f"with another; edit params.yaml instead, then run again")


def committed_data_md5(repo: str | Path = ".") -> tuple[str | None, str]:
    """(md5, path) of the raw snapshot recorded in ``data.dvc``; md5 None if there is none."""
    outs = _load_yaml(Path(repo, "data.dvc")).get("outs") or [{}]
    return outs[0].get("md5"), outs[0].get("path", "data")


def remote_url(repo: str | Path = ".") -> str | None:
    """The default DVC remote's URL (config.local over config; a local path as a file URI),
    read with configobj, the parser DVC itself uses for these files."""
    from configobj import ConfigObj

    dvc_dir = Path(repo, ".dvc")
    merged: dict[str, dict] = {}
    for name in ("config", "config.local"):
        if (dvc_dir / name).is_file():
            for section, values in ConfigObj(str(dvc_dir / name)).items():
                merged.setdefault(section, {}).update(values)
    default = merged.get("core", {}).get("remote")
    url = merged.get(f'remote "{default}"', {}).get("url") if default else None
    if url and "://" not in url:
        url = (dvc_dir / url).resolve().as_uri()
    return url


def dataset_uri(repo: str | Path, md5: str) -> str | None:
    """Where the DVC remote keeps the snapshot with this md5 (DVC 3's files/md5 layout)."""
    url = remote_url(repo)
    return f"{url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}" if url and md5 else None


def locked_stage(repo: str | Path = ".", stage: str = "prepare") -> dict:
    """The ``prepare`` entry of dvc.lock (deps, params, outs with md5s); {} if never run."""
    return (_load_yaml(Path(repo, "dvc.lock")).get("stages") or {}).get(stage, {})


def dvc_status(repo: str | Path = ".", targets: list[str] = ()) -> dict:
    """``dvc status --json``: {} when the workspace matches data.dvc and dvc.lock."""
    out = run_dvc(["status", "--json", *targets], repo).stdout
    # DVC may print progress lines before the JSON (iterative/dvc#10242): take the last object.
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def verify_raw_snapshot(repo: str | Path = ".", accept_new: bool = False) -> str:
    """Check ``data/`` against the md5 committed in data.dvc, then cache it for ``dvc push``.

    A mismatch raises DataLineageError naming both md5s, unless ``accept_new`` (a deliberate
    new source): then data.dvc is updated and the new md5 must be committed to git. Returns
    the snapshot's md5.
    """
    committed, rel = committed_data_md5(repo)
    data = Path(repo, rel)
    if not data.is_dir():
        raise DataLineageError(f"{data}: missing; run `ganpkg data ingest` or `dvc pull data.dvc`")
    actual = dir_md5(data)
    if committed is None or committed != actual:
        if not accept_new:
            raise DataLineageError(
                f"{data}/ has md5 {actual} but data.dvc records {committed}: the source no longer "
                "gives the committed snapshot. Stop here. If the new data is intended, accept it "
                "(`dvc commit -f data.dvc`, or pipelines.data.verify_raw_snapshot(accept_new=True)) "
                "and commit data.dvc to git."
            )
        if committed is None:
            run_dvc(["add", rel], repo)
            return actual
    # Same bytes: put them into the cache (no change to data.dvc) so `dvc push` can send them.
    run_dvc(["commit", "--force", "data.dvc"], repo)
    return actual


def repro_prepare(repo: str | Path = ".") -> str:
    """``dvc repro prepare`` (a no-op when nothing it reads changed); returns DVC's output."""
    return repro(repo, "prepare")


def repro_for(config: Config, repo: str | Path = ".") -> str:
    """``dvc repro`` of what this data supports: prepare, the label-free extractor, and the
    label classifier where every image has a label (on a folder without labels that stage
    cannot run, and is left out). A config that evaluates with the classifier on such data is
    refused in one line."""
    from ganpkg.data.prepared import open_prepared
    from ganpkg.evaluation.extractors import all_labeled

    out = repro(repo, "prepare")
    stages = ["train_selfsup"]
    if all_labeled(open_prepared(Path(repo, config.data.prepared_dir)).labels):
        stages.append("train_extractor")
    elif config.eval.extractor == "domain":
        raise UserError(f"{config.data.prepared_dir}: some images have no label (or one class "
                        f"only), so eval.extractor=domain (a classifier of the labels) cannot "
                        f"be trained: use eval.extractor=auto or selfsup (the label-free encoder)")
    return out + repro(repo, *stages)


def push(repo: str | Path = ".", remote: str | None = None) -> str:
    """``dvc push`` to the default remote (local disk unless configured otherwise)."""
    return run_dvc(["push", *(["--remote", remote] if remote else [])], repo).stdout


def sync(config: DataConfig, repo: str | Path = ".") -> str:
    """data/ from the source, or from the DVC remote when the source cannot give it; verified.

    Returns the snapshot's md5 (equal to the one committed in data.dvc, or an error).
    """
    from ganpkg.data.ingest import ingest

    try:
        ingest(config)
    except UserError as err:  # e.g. offline and no local copy: the remote may have it
        pulled = run_dvc(["pull", "data.dvc"], repo, check=False)
        if pulled.returncode != 0:
            raise DataLineageError(f"{err}; `dvc pull data.dvc` failed too") from err
    return verify_raw_snapshot(repo)


def repro(repo: str | Path = ".", *stages: str) -> str:
    """``dvc repro`` of these stages, or of all (each skipped when nothing it reads changed).

    Its output is passed on line by line as it comes (logger ``ganpkg.data``: the terminal
    and the flow run's logs): the first run prepares data and trains the extractor for
    minutes, which used to pass in silence.

    ``--pull``: a stage whose dvc.lock entry matches and whose outputs are on the DVC remote
    is pulled, not run again. A second clone against a shared remote (the stack's S3 bucket)
    gets the same prepared data and the same extractor bytes, so its metrics are comparable;
    what the remote lacks is computed as before.
    """
    args = ["repro", "--pull", *stages]
    # --wait-for-lock: ganpkg's workspace lock already keeps other flows out, so DVC's own lock
    # held means a dvc left running by a killed run (it finishes its stage): wait, not fail.
    proc = subprocess.Popen([_dvc_exe(), "--wait-for-lock", *args], cwd=repo, env=_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip():
                _log.info("dvc: %s", line.rstrip())
    except BaseException:  # interrupted: DVC stops its stage and releases its lock on SIGINT
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        restore_outputs(repo)
        raise
    if proc.wait() != 0:
        restore_outputs(repo)
        raise stage_failure(args, proc.returncode, "".join(lines))
    return "".join(lines)


def restore_outputs(repo: str | Path = ".") -> None:
    """After a failed or interrupted `dvc repro`: `dvc checkout` puts back the outputs DVC
    removed before running a stage (prepared/, extractor/), as dvc.lock records them, so a
    failed run leaves the workspace as it found it. Nothing to restore is not an error."""
    out = run_dvc(["checkout"], repo, check=False)
    if out.returncode != 0:
        _log.info("dvc checkout after the failed repro: %s",
                  (out.stderr or out.stdout).strip().splitlines()[-1:] or "nothing restored")


def stage_failure(args: list[str], code: int, output: str) -> Exception:
    """A stage's command that refused its input (ganpkg's one-line ``error: …``) is the user's
    error, given as that line, not retried; anything else stays DVC's failure."""
    said = [line.strip().removeprefix("error: ") for line in output.splitlines()
            if line.startswith("error: ")]
    stage = re.search(r"failed to reproduce '([^']+)'", output)
    if said:
        where = f" (DVC stage {stage.group(1)}; outputs restored)" if stage else ""
        return UserError(said[-1] + where)
    return _dvc_failed(args, code, output)


def data_lineage(repo: str | Path = ".", hash_workspace: bool = False) -> dict[str, Any]:
    """Data lineage for tags: data.dvc md5, prepared md5 from dvc.lock, and workspace drift.

    ``workspace_clean`` is True when ``dvc status`` reports nothing (data/ matches data.dvc,
    prepared/ and the params it reads match dvc.lock). ``hash_workspace`` also hashes data/
    and prepared/ here (slower; DVC's own status uses its hash cache).
    """
    data_md5, data_path = committed_data_md5(repo)
    stage = locked_stage(repo)
    outs = stage.get("outs") or [{}]
    lineage: dict[str, Any] = {
        "data_dvc_md5": data_md5,
        "prepared_md5": outs[0].get("md5"),
        "prepared_path": outs[0].get("path"),
        "prepare_params": (stage.get("params") or {}).get("params.yaml", {}),
    }
    status = dvc_status(repo)
    lineage["dvc_status"] = status
    lineage["data_changed"] = "data.dvc" in status
    lineage["prepared_changed"] = "prepare" in status
    lineage["workspace_clean"] = not status
    if hash_workspace:
        for key, rel in (("data_workspace_md5", data_path), ("prepared_workspace_md5",
                                                             lineage["prepared_path"])):
            lineage[key] = dir_md5(Path(repo, rel)) if rel and Path(repo, rel).is_dir() else None
    return lineage
