"""Prepare: skip-and-record, strict mode, zero usable images, data/ untouched, atomic output."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from data_helpers import folder_config, tree_state, write

import ganpkg.data.prepared as prepared_module
from ganpkg.config import DataConfig
from ganpkg.data.ingest import ingest
from ganpkg.data.prepare import prepare
from ganpkg.data.prepared import open_prepared
from ganpkg.errors import UserError

EXPECTED_REJECTS = {
    "images/b/corrupt.png": "not a readable image",
    "images/b/truncated.png": "truncated",
    "images/b/zero.png": "zero-byte",
    "images/b/text.jpg": "not a readable image",
    "images/b/bomb.png": "decompression bomb",
    "images/b/dup.png": "duplicate of images/a/good0.png",
}


def leftovers(root: Path) -> list[str]:
    """Hidden temp/scratch folders left beside data/ and prepared/."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_bad_files_are_skipped_and_recorded(workdir, bad_folder):
    cfg = folder_config(bad_folder, channels=3)
    ingest(cfg)
    before = tree_state(workdir / "data")
    result = prepare(cfg)
    assert tree_state(workdir / "data") == before  # prepare never touches data/
    assert result.accepted == 3
    reasons = {r["path"]: r["reason"] for r in result.rejected}
    assert set(reasons) == set(EXPECTED_REJECTS)
    for path, words in EXPECTED_REJECTS.items():
        assert words in reasons[path], (path, reasons[path])
    ds = open_prepared("prepared")
    assert ds.images.shape == (3, 3, 32, 32)
    assert ds.manifest["rejected"] == result.rejected
    assert ds.manifest["rejected_count"] == 6
    assert ds.manifest["resize_filter"] == "PIL.Image.Resampling.LANCZOS"
    assert ds.manifest["classes"] == ["a", "b"]
    assert ds.manifest["label_counts"] == {"0": 3}
    assert ds.manifest["upscaled"] == 3 and ds.manifest["cropped"] == 1  # all < 32 px
    # good1.jpg is a solid red JPEG: after conversion it is still (nearly) pure red.
    red = ds.images[1].reshape(3, -1).mean(axis=1)
    assert red[0] > 190 and red[1] < 20 and red[2] < 20
    assert leftovers(workdir) == []


def test_strict_mode_fails_on_the_first_bad_file_and_writes_nothing(workdir, bad_folder):
    ingest(folder_config(bad_folder))
    with pytest.raises(UserError, match=r"images/b/bomb.png: decompression bomb.*data.strict"):
        prepare(folder_config(bad_folder, strict=True))
    assert not (workdir / "prepared").exists()
    assert leftovers(workdir) == []


def test_strict_ingest_accepts_a_clean_folder(workdir, good_folder):
    cfg = folder_config(good_folder, strict=True)
    ingest(cfg)
    assert prepare(cfg).accepted == 5


def test_zero_usable_images_is_an_error(workdir, tmp_path):
    src = tmp_path / "unusable"
    write(src / "x.png", b"")
    write(src / "y.jpg", b"not a jpeg")
    ingest(folder_config(src))
    with pytest.raises(UserError, match=r"no usable image among 2 \(2 rejected"):
        prepare(folder_config(src))
    assert not (workdir / "prepared").exists()
    assert leftovers(workdir) == []


def test_labels_from_subfolders_and_deterministic_output(workdir, good_folder):
    cfg = folder_config(good_folder)
    ingest(cfg)
    prepare(cfg)
    first = {n: (workdir / "prepared" / n).read_bytes() for n in ("images.npy", "labels.npy",
                                                                  "manifest.json")}
    prepare(cfg)
    for name, data in first.items():
        assert (workdir / "prepared" / name).read_bytes() == data, name
    ds = open_prepared("prepared")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.manifest["classes"] == ["cat", "dog"]
    assert ds.manifest["label_counts"] == {"0": 3, "1": 2}


def test_max_images_caps_the_accepted_count(workdir, good_folder):
    cfg = folder_config(good_folder, max_images=2, resolution=64)
    ingest(cfg)
    ds = open_prepared(prepare(cfg).prepared_dir)
    assert ds.images.shape == (2, 1, 64, 64)


def test_failed_write_keeps_the_previous_prepared(workdir, good_folder, monkeypatch):
    cfg = folder_config(good_folder)
    ingest(cfg)
    prepare(cfg)
    before = tree_state(workdir / "prepared")

    def broken_save(path, arr, *args, **kwargs):
        Path(path).write_bytes(b"half")  # something is on disk when the crash comes
        raise OSError("disk full")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="disk full"):
        patch.setattr(prepared_module.np, "save", broken_save)
        prepare(folder_config(good_folder, resolution=64))
    assert tree_state(workdir / "prepared") == before
    assert open_prepared("prepared").images.shape == (5, 1, 32, 32)
    assert leftovers(workdir) == []


def test_source_mismatch_and_missing_snapshot_are_errors(workdir, good_folder):
    with pytest.raises(UserError, match="snapshot.json: missing; run `ganpkg data ingest`"):
        prepare(folder_config(good_folder))
    ingest(folder_config(good_folder))
    with pytest.raises(UserError, match="holds a 'image_folder' snapshot but data.source is 'mnist'"):
        prepare(DataConfig())


def test_mnist_prepare(workdir):
    ingest(DataConfig())
    result = prepare(DataConfig(max_images=300, channels=3, split="test"))
    ds = open_prepared(result.prepared_dir)
    assert ds.images.shape == (300, 3, 32, 32)
    assert ds.manifest["source_md5s"]["MNIST/raw/t10k-images-idx3-ubyte.gz"] == (
        "9fb629c4189551a2d022fa330f9573f3")
    # The first test digit is a 7; grey replicated into three equal channels.
    assert ds.labels[0] == 7 and np.array_equal(ds.images[0, 0], ds.images[0, 2])
    assert ds.images[0].max() == 255 and ds.images[0, :, 0, :].max() == 0  # black border
    assert json.loads((workdir / "prepared/manifest.json").read_text())["split"] == "test"


def _idx(array: np.ndarray) -> bytes:
    """An idx (MNIST) file: magic 0x08 uint8 with ndim, big-endian dims, raw bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_torchvision_source_offline_from_source_path(workdir, tmp_path):
    root = tmp_path / "fashion"
    raw = root / "FashionMNIST" / "raw"
    images = np.zeros((6, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    labels = np.arange(6, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write(raw / f"{prefix}-images-idx3-ubyte", _idx(images))
        write(raw / f"{prefix}-labels-idx1-ubyte", _idx(labels))
    cfg = DataConfig(source="torchvision", torchvision_name="FashionMNIST",
                     source_path=str(root), split="all")
    ingest(cfg)
    ds = open_prepared(prepare(cfg).prepared_dir)
    assert ds.images.shape == (12, 1, 32, 32)
    assert ds.labels.tolist() == [0, 1, 2, 3, 4, 5] * 2
    assert ds.images[:, 0, 16, 16].min() == 255 and ds.images[:, 0, 0, 0].max() == 0


def test_torchvision_source_missing_files_says_where_to_put_them(workdir, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = DataConfig(source="torchvision", torchvision_name="FashionMNIST",
                     source_path=str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"FashionMNIST.*set\s+data.source_path"):
        ingest(cfg)
    assert not (workdir / "data").exists() and leftovers(workdir) == []
