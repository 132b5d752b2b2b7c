"""Helpers of the data tests: small image files and configs, built in tmp dirs only."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ganpkg.config import DataConfig


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """Image → file bytes in ``fmt``."""
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def noise_png(seed: int, size: int = 20, mode: str = "RGB") -> bytes:
    """A distinct random image as PNG bytes (distinct seeds → distinct bytes)."""
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return encode(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` pixels (a decompression bomb)."""
    good = encode(Image.new("L", (1, 1)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    # The signature is 8 bytes, then the 25-byte IHDR chunk (length, type, data, CRC).
    return good[:8] + patched + good[8 + 25:]


def write(path: Path, data: bytes) -> Path:
    """Write bytes, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree_state(root: Path) -> dict[str, tuple[str, float, int]]:
    """path → (md5, mtime, mode) of every file and folder under root (to prove nothing changed)."""
    state = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            path = Path(dirpath, name)
            st = path.stat()
            digest = hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            state[path.relative_to(root).as_posix()] = (digest, st.st_mtime_ns, st.st_mode)
    return state


def folder_config(source: Path, **overrides) -> DataConfig:
    """A DataConfig for the image_folder source (paths relative to the cwd)."""
    return DataConfig(source="image_folder", source_path=str(source), **overrides)
