"""The bad-input battery: each case runs the real `ganpkg` command line in a subprocess and
checks its exit code, that it says one line without a traceback, and that data, prepared data,
the registry and run directories are as they were (nothing created, nothing half-written).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# The root conftest's data helper, loaded by path (conftest modules cannot be imported by name
# when several test folders have one).
_spec = importlib.util.spec_from_file_location("_ganpkg_root_conftest_rel",
                                               Path(__file__).parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
make_prepared = _root.make_prepared

GANPKG = str(Path(sys.executable).with_name("ganpkg"))
TINY = ["--set", "model.z_dim=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "train.batch_size=16", "--set", "train.total_steps=8",
        "--set", "train.checkpoint_every_steps=4", "--set", "train.sample_every_steps=4",
        "--set", "train.sample_grid_size=4", "--set", "train.device=cpu"]


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and mtime: what "unchanged" compares."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_dir()}


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str  # a fragment of the one line
    code: int = 2
    env: dict[str, str] | None = None
    files: dict[str, str] | None = None  # written into the folder before the command


def ganpkg(args: list[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    full.update(env or {})
    return subprocess.run([GANPKG, *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout, check=False)


def check_one_line(done: subprocess.CompletedProcess, code: int, expect: str) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == code, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert expect in errors[0], errors[0]
    return errors[0]


DVC_YAML = (Path(__file__).parents[2] / "dvc.yaml").read_text()
DEAD_MLFLOW = f"http://127.0.0.1:{dead_port()}"
CASES = [
    Case("lineage with no store", ["lineage", "models:/ganpkg-generator@champion"],
         "no MLflow store at"),
    Case("sample from a store that does not exist",
         ["sample", "--model", "models:/ganpkg-generator@champion", "--out", "g.png"],
         "no MLflow store at"),
    Case("leaderboard with no store", ["leaderboard"], "no MLflow store at"),
    Case("promote with no store", ["promote", "--version", "1", "--reason", "x"],
         "no MLflow store at"),
    Case("lineage against a dead server", ["lineage", "models:/ganpkg-generator@champion"],
         "no answer in 5 s", env={"MLFLOW_TRACKING_URI": DEAD_MLFLOW}),
    Case("run against a dead MLflow server", ["run"], "MLFLOW_TRACKING_URI=",
         env={"MLFLOW_TRACKING_URI": DEAD_MLFLOW}),
    Case("run against a dead Prefect API", ["run"], "PREFECT_API_URL=",
         env={"PREFECT_API_URL": f"http://127.0.0.1:{dead_port()}/api"}),
    Case("serve against a dead Prefect API", ["serve"], "PREFECT_API_URL=",
         env={"PREFECT_API_URL": f"http://127.0.0.1:{dead_port()}/api"}),
    Case("--set of a key DVC reads", ["run", "--set", "data.resolution=64"],
         "DVC's stages read data.resolution", files={"dvc.yaml": DVC_YAML}),
    Case("--set of the extractor's keys", ["run", "--set", "eval.domain.epochs=3"],
         "DVC's stages read eval.domain", files={"dvc.yaml": DVC_YAML}),
    Case("--set of a data key DVC does not list", ["run", "--set", "data.source_path=/x"],
         "edit params.yaml"),
    Case("unparsable --set value", ["train", "--set", "train.lr_g=abc"], "train.lr_g"),
    Case("--set without a value", ["train", "--set", "train.lr_g"], "section.key=value"),
    Case("infinite learning rate", ["train", "--set", "train.lr_g=inf"], "train.lr_g"),
    Case("unknown key", ["train", "--set", "train.lr=1"], "train.lr"),
    Case("unknown loss", ["train", "--set", "train.loss=lsgan"], "allowed"),
    Case("empty params file", ["train", "--config", "empty.yaml"], "empty.yaml",
         files={"empty.yaml": ""}),
    Case("duplicate keys", ["train", "--config", "dup.yaml"], "dup.yaml",
         files={"dup.yaml": "train:\n  lr_g: 0.1\n  lr_g: 0.2\n"}),
    Case("params file that is not a mapping", ["train", "--config", "list.yaml"], "list.yaml",
         files={"list.yaml": "- 1\n- 2\n"}),
    Case("missing params file", ["train", "--config", "nope.yaml"], "nope.yaml"),
    Case("a cron that is not one", ["serve", "--set", "schedule.cron=every day"],
         "schedule.cron"),
    Case("run into a read-only place", ["run", "--set", "train.run_dir=/proc/ganpkg/run"],
         "train.run_dir: cannot write in /proc"),
    Case("run into a train.run_dir that is a file", ["run", "--set", "train.run_dir=afile"],
         "is a file, not a folder", files={"afile": "not a folder"}),
    Case("train with no prepared data", ["train", *TINY, "--set", "data.prepared_dir=none"],
         "missing; run `ganpkg data prepare`"),
    Case("a checkpoint that is not one", ["sample", "--checkpoint", "junk.pt", "--out", "g.png"],
         "not a readable ganpkg checkpoint", files={"junk.pt": "junk"}),
    Case("sample with neither source", ["sample", "--out", "g.png"], "exactly one of"),
    Case("evaluate a missing checkpoint", ["evaluate", "--checkpoint", "none.pt"],
         "none.pt: file not found"),
    *[Case(f"{args[0]} with a damaged store", args, "mlflow.db: file is not a database",
           files={"mlflow.db": "not sqlite " * 400})
      for args in (["run"], ["leaderboard"], ["promote", "--version", "1", "--reason", "x"],
                   ["sample", "--model", "models:/ganpkg-generator@champion", "--out", "g.png"])],
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path):
    for name, text in (case.files or {}).items():
        (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    start = time.monotonic()
    done = ganpkg(case.args, tmp_path, case.env)
    check_one_line(done, case.code, case.expect)
    assert snapshot(tmp_path) == before  # no mlflow.db, no runs/, no prepared/
    assert time.monotonic() - start < 60  # a dead server is a few seconds, not minutes


# -- cases that need a real checkpoint ------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run: its prepared data, run directory and newest checkpoint."""

    root = tmp_path_factory.mktemp("trained")
    prepared = make_prepared(root / "prepared", n=64)
    args = [*TINY, "--set", f"data.prepared_dir={prepared}", "--set", f"train.run_dir={root / 'run'}"]
    done = ganpkg(["train", *args], root)
    assert done.returncode == 0, done.stderr
    ckpt = max((root / "run" / "checkpoints").glob("step-*.pt"))
    return root, prepared, args, ckpt


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_a_pickled_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"format": 1, "payload": _Payload(marker)}, tmp_path / "evil.pt")
    done = ganpkg(["sample", "--checkpoint", "evil.pt", "--out", "g.png"], tmp_path)
    check_one_line(done, 2, "not a readable ganpkg checkpoint")
    assert not marker.exists() and not (tmp_path / "g.png").exists()


def test_sample_into_an_unwritable_place_is_one_line(trained, tmp_path):
    _, _, _, ckpt = trained
    done = ganpkg(["sample", "--checkpoint", str(ckpt), "--out", "/proc/ganpkg/g.png"], tmp_path)
    check_one_line(done, 1, "/proc/ganpkg")


def _broken(ckpt: Path, out: Path, how: str) -> Path:
    """A copy of a real checkpoint, broken one way (written with torch.save, as ganpkg does)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if how == "nan weights":
        state["g_ema"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                          for k, v in state["g_ema"].items()}
    elif how == "another width":
        state["config"]["model"]["g_width"] = 2 * state["config"]["model"]["g_width"]
    else:  # no EMA generator
        del state["g_ema"]
    torch.save(state, out)
    return out


@pytest.mark.parametrize(("how", "expect"), [("nan weights", "NaN or infinite"),
                                             ("another width", "do not fit its own config"),
                                             ("no ema", "has no g_ema")])
@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_a_broken_generator_is_one_line_not_a_measurement(trained, tmp_path, how, expect,
                                                          command):
    _, prepared, args, ckpt = trained
    broken = _broken(ckpt, tmp_path / "broken.pt", how)
    extra = ["--out", "g.png"] if command == "sample" else \
        [*args[:2], "--set", f"data.prepared_dir={prepared}", "--out", "eval"]
    done = ganpkg([command, "--checkpoint", str(broken), *extra], tmp_path)
    check_one_line(done, 2, expect)
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "eval").exists()


def test_resume_on_other_data_is_refused(trained, tmp_path):

    root, _, args, _ = trained
    before = snapshot(root / "run")
    other = make_prepared(tmp_path / "other", n=64, seed=7)  # same shape, other images
    done = ganpkg(["train", *args, "--set", f"data.prepared_dir={other}",
                   "--set", "train.total_steps=12"], root)
    check_one_line(done, 2, "trained on other data")
    bigger = make_prepared(tmp_path / "bigger", n=64, resolution=64)
    done = ganpkg(["train", *args, "--set", f"data.prepared_dir={bigger}",
                   "--set", "data.resolution=64", "--set", "train.total_steps=12"], root)
    check_one_line(done, 2, "1-channel 32 px images")
    assert snapshot(root / "run") == before


def _tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, check=False).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


@pytest.mark.parametrize("read_only", [False, True], ids=["full-disk", "read-only"])
def test_a_full_or_read_only_run_dir_is_one_line(trained, tmp_path, read_only):
    root, _, args, _ = trained
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "64k", read_only):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        done = ganpkg(["train", *args, "--set", f"train.run_dir={disk / 'run'}"], root)
        line = check_one_line(done, 1, str(disk))
        assert ("No space left" in line) == (not read_only), line
        if not read_only:  # the run folder still takes a few bytes: it says FAILED, and why
            status = disk / "run" / "status.json"
            assert not status.exists() or '"FAILED"' in status.read_text()
    finally:
        _umount(disk)


def test_manifest_is_byte_identical_and_odd_entries_are_recorded(tmp_path):
    """The same folder twice gives the same prepared bytes (no memory address in a reason);
    a FIFO and a looping link are recorded as skipped, not dropped without a trace."""
    import json

    import numpy as np
    from PIL import Image

    from ganpkg.config import load_config
    from ganpkg.data.ingest import ingest
    from ganpkg.data.prepare import prepare

    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    for i in range(20):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(src / f"{i}.png")
    (src / "broken.png").write_bytes(b"not an image")
    os.mkfifo(src / "fifo.png")
    (src / "loop.png").symlink_to(src / "loop.png")
    manifests = []
    for k in range(2):
        cfg = load_config(None, ["data.source=image_folder", f"data.source_path={src.parent}",
                                 f"data.raw_dir={tmp_path / f'raw{k}'}",
                                 f"data.prepared_dir={tmp_path / f'prep{k}'}"])
        skipped = ingest(cfg.data)
        prepare(cfg.data)
        manifests.append((tmp_path / f"prep{k}" / "manifest.json").read_bytes())
    assert manifests[0] == manifests[1]
    reasons = json.loads(manifests[0])["rejected"]
    assert any("broken.png" in r["path"] and "0x" not in r["reason"] for r in reasons), reasons
    snapshot_text = json.dumps(skipped.skipped)
    assert "fifo.png" in snapshot_text and "FIFO" in snapshot_text, snapshot_text
    assert "loop.png" in snapshot_text, snapshot_text


@pytest.mark.parametrize(("command", "extra", "expect"), [
    ("sample", ["--n", "10000000", "--out", "g.png"], "one grid holds at most 4096 images"),
    ("sample", ["--n", "1000000000000", "--out", "many"], "GiB of PNGs"),
    ("evaluate", ["--set", "eval.n_samples=100000000000", "--out", "eval"],
     "eval.n_samples 100000000000: its features need about"),
    ("train", ["--set", "train.batch_size=60000", "--set", "train.run_dir=big"],
     "train.batch_size 60000 is more than the 64 prepared images"),
], ids=["grid", "folder", "eval-samples", "batch"])
def test_what_cannot_fit_is_refused_before_work_starts(trained, tmp_path, command, extra,
                                                       expect):
    _, _, args, ckpt = trained
    source = [] if command == "train" else ["--checkpoint", str(ckpt)]
    config = [] if command == "sample" else args
    before = snapshot(tmp_path)
    done = ganpkg([command, *source, *config, *extra], tmp_path)
    check_one_line(done, 2, expect)
    assert snapshot(tmp_path) == before  # no grid, no folder, no run directory


def test_out_of_memory_in_training_is_one_line_and_a_failed_status(trained, tmp_path):
    import shutil

    _, _, args, _ = trained
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    # 5 GB of address space: ganpkg with torch needs about 3.7 GB, a 2048-wide generator more.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(["prlimit", "--as=5000000000", GANPKG, "train", *args,
                           "--set", "model.g_width=2048", "--set", "train.run_dir=huge"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    check_one_line(done, 2, "out of memory at step 0 (train.batch_size 16, model.g_width 2048")
    status = json.loads((tmp_path / "huge" / "status.json").read_text())
    assert status["status"] == "FAILED" and "out of memory" in status["message"]


def test_a_read_only_store_is_one_line_before_any_work(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        # a real store, made by a process that then exits (an open one keeps the mount busy)
        make_store = ("import sys; from mlflow import MlflowClient; "
                      "MlflowClient(sys.argv[1]).search_experiments()")
        subprocess.run([sys.executable, "-c", make_store, f"sqlite:///{disk / 'mlflow.db'}"],
                       check=True, capture_output=True)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True,
                                 check=False)
        if remount.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only here")
        (tmp_path / "work").mkdir()
        done = ganpkg(["run"], tmp_path / "work",
                      {"MLFLOW_TRACKING_URI": f"sqlite:///{disk / 'mlflow.db'}"})
        check_one_line(done, 2, f"MLflow store {disk / 'mlflow.db'}: attempt to write a readonly")
        assert snapshot(tmp_path / "work") == {}  # no runs/ folder left behind
    finally:
        _umount(disk)
