"""Data sources (``data.source`` in params.yaml): what one is, and the image-folder source.

A source knows two things: how to copy its raw files into the snapshot folder (``ingest``),
and how to list the images of a snapshot for ``prepare`` (``items``). Sources register in
``DATA_SOURCES`` by name; ``get_source`` lists the valid names when asked for an unknown one.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from ganpkg.data.images import IMAGE_EXTENSIONS, RejectedImage, decode_bytes
from ganpkg.errors import UserError
from ganpkg.files import hash_bytes
from ganpkg.registry import DATA_SOURCES

if TYPE_CHECKING:
    from ganpkg.config import DataConfig

SNAPSHOT = "snapshot.json"  # the snapshot's own description, inside data/ (deterministic)


@dataclass(frozen=True)
class Fetched:
    """One decoded source image with its label and, for file sources, the bytes' md5."""

    image: Image.Image
    label: int
    digest: str | None = None


@dataclass(frozen=True)
class Item:
    """One image of a snapshot: a stable key for the manifest and a lazy, thread-safe fetch."""

    key: str
    fetch: Callable[[], Fetched]


@dataclass
class Listing:
    """What ``Source.items`` returns: the images in a deterministic order and class names."""

    items: list[Item]
    classes: list[str] = field(default_factory=list)
    # File decoding gains from threads (PIL drops the GIL); in-memory arrays lose to the
    # pool's per-item overhead, so array sources run inline.
    parallel: bool = True


Skipped = tuple[str, str]  # (path relative to the source, reason)
# The reason of a file a source leaves out by design (not a failure: data.strict ignores it).
NOT_AN_IMAGE = "not an image file"


def is_ignored(reason: str) -> bool:
    return reason.startswith(NOT_AN_IMAGE)


class Source(Protocol):
    """What every data source provides."""

    name: str

    def ingest(self, config: DataConfig, dest: Path) -> list[Skipped]:
        """Copy the raw files into ``dest`` (a fresh folder); return files skipped and why."""
        ...

    def items(self, raw: Path, snapshot: dict, config: DataConfig) -> Listing:
        """List the images of the snapshot in ``raw`` for ``config.split``."""
        ...


def get_source(name: str) -> Source:
    """The source registered as ``name``; an unknown name is a UserError listing valid ones."""
    return DATA_SOURCES.get(name)()


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a file that cannot be read becomes a RejectedImage with the reason."""
    try:
        return path.read_bytes()
    except PermissionError:
        raise RejectedImage("unreadable: permission denied") from None
    except OSError as err:
        raise RejectedImage(f"unreadable: {err.strerror or err}") from None


def is_image_name(name: str) -> bool:
    """True when a file name has one of the accepted image extensions (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def sorted_files(root: Path, odd: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Every regular file under ``root`` (following no directory links), in sorted order.

    Sorting by the POSIX relative path makes the order, and so the snapshot and the prepared
    array, independent of the file system's directory order. Entries that are not regular
    files (a FIFO, a socket, a device, a dangling or looping link) are appended to ``odd``
    with what they are, so the caller can record them instead of dropping them silently.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:  # os.walk does not enter linked folders: say so
            if odd is not None and Path(dirpath, name).is_symlink():
                odd.append((Path(dirpath, name), "a link to a folder (not followed)"))
        for name in filenames:
            path = Path(dirpath, name)
            if name.startswith("."):
                continue
            if path.is_file():
                found.append(path)
            elif odd is not None:
                odd.append((path, _not_a_file(path)))
    if odd is not None:
        odd.sort(key=lambda entry: entry[0].relative_to(root).as_posix())
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _not_a_file(path: Path) -> str:
    """Why ``path`` (listed, but not a regular file) is skipped, in a few words."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as err:  # ELOOP, ENOENT
            return f"unreadable link ({err.strerror or err})"
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"not a regular file ({kind})"
    return "not a regular file"


@DATA_SOURCES.register("image_folder")
class ImageFolderSource:
    """A folder of images, recursive; labels from first-level sub-folder names when present.

    Ingest copies every file with an image extension byte for byte into ``data/images/``
    (decoding is prepare's job, so a bad file is recorded there with its reason); a file that
    cannot even be read is skipped and recorded in the snapshot (or fails, in strict mode).
    ``data.split`` does not apply: a folder is one split.
    """

    name = "image_folder"
    subdir = "images"

    def ingest(self, config: DataConfig, dest: Path) -> list[Skipped]:
        assert config.source_path, "validated by Config"
        src = Path(config.source_path).expanduser()
        if not src.is_dir():
            raise UserError(f"data.source_path: {src} is not a folder (source image_folder)")
        odd: list[tuple[Path, str]] = []
        files = []
        ignored: list[Skipped] = []
        for path in sorted_files(src, odd):
            if not is_image_name(path.name):  # listed, so nothing leaves the folder unsaid
                kind = path.suffix.lower() or "no extension"
                ignored.append((f"{self.subdir}/{path.relative_to(src).as_posix()}",
                                f"{NOT_AN_IMAGE} ({kind}; taken: {', '.join(IMAGE_EXTENSIONS)})"))
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(src.resolve()):
                # its bytes are not the folder's to copy, version and push (e.g. /etc/passwd)
                odd.append((path, "a link to a file outside the folder (not followed)"))
            else:
                files.append(path)
        odd.sort(key=lambda entry: entry[0].relative_to(src).as_posix())
        if not files:
            raise UserError(
                f"data.source_path: {src} holds no image files "
                f"(looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
            )
        skipped: list[Skipped] = ignored
        for path, reason in odd:  # recorded in the snapshot, like unreadable image files
            if config.strict:
                raise UserError(f"{path}: {reason} (data.strict is true)")
            skipped.append((f"{self.subdir}/{path.relative_to(src).as_posix()}", reason))
        made: set[Path] = set()
        for path in files:
            rel = path.relative_to(src).as_posix()
            try:
                data = read_bytes(path)
            except RejectedImage as err:
                if config.strict:
                    raise UserError(f"{path}: {err.reason} (data.strict is true)") from None
                skipped.append((f"{self.subdir}/{rel}", err.reason))
                continue
            out = dest / self.subdir / rel
            if out.parent not in made:  # one mkdir per folder, not per file
                out.parent.mkdir(parents=True, exist_ok=True)
                made.add(out.parent)
            out.write_bytes(data)
        return skipped

    def items(self, raw: Path, snapshot: dict, config: DataConfig) -> Listing:
        prefix = f"{self.subdir}/"
        paths = [f["path"] for f in snapshot["files"] if f["path"].startswith(prefix)]
        rel = [p[len(prefix):] for p in paths]
        classes = sorted({r.split("/")[0] for r in rel if "/" in r})
        index = {name: i for i, name in enumerate(classes)}
        items = []
        for path, r in zip(paths, rel, strict=True):
            label = index[r.split("/")[0]] if "/" in r else -1
            items.append(Item(path, _file_fetcher(raw / path, label)))
        return Listing(items, classes)


def _file_fetcher(path: Path, label: int) -> Callable[[], Fetched]:
    def fetch() -> Fetched:
        data = read_bytes(path)
        return Fetched(decode_bytes(data), label, hash_bytes(data, "md5"))

    return fetch


def copy_verbatim(src: Path, dst: Path) -> None:
    """Copy a file's bytes (not its times or permissions: they are not part of the snapshot)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
