"""Fixtures of the data tests (helpers live in data_helpers.py, a name no other suite uses)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Importable by the test modules under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))

from data_helpers import bomb_png, encode, noise_png, write
from PIL import Image


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cwd: data/ and prepared/ resolve inside it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    """Two classes (cat: 3 images, dog: 2) of distinct, valid images."""
    root = tmp_path / "src_good"
    for i in range(3):
        write(root / "cat" / f"c{i}.png", noise_png(i))
    for i in range(2):
        write(root / "dog" / f"d{i}.png", noise_png(10 + i))
    return root


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """Valid images plus one file of every bad kind; a text file the ingest should ignore."""
    root = tmp_path / "src_bad"
    write(root / "a" / "good0.png", noise_png(0))
    write(root / "a" / "good1.jpg", encode(Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG"))
    write(root / "a" / "small.png", noise_png(2, size=8))
    write(root / "b" / "corrupt.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    write(root / "b" / "truncated.png", noise_png(3, size=64)[:300])
    write(root / "b" / "zero.png", b"")
    write(root / "b" / "text.jpg", b"this is not an image, whatever the extension says\n")
    write(root / "b" / "bomb.png", bomb_png())
    write(root / "b" / "dup.png", noise_png(0))  # same bytes as a/good0.png
    write(root / "b" / "notes.txt", b"ignored: no image extension")
    return root


