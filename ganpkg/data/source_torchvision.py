"""Any torchvision image dataset by name (``data.torchvision_name``: CIFAR10, CelebA, LSUN, …).

The snapshot is torchvision's own root folder, copied file by file into ``data/root/``:
the bytes torchvision downloaded (or the user placed) are the raw data, and prepare reads them
back through the same dataset class with ``download=False``. With ``data.source_path`` set,
that folder is taken as the dataset root (the air-gapped path); otherwise ingest downloads.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ganpkg.data.images import array_to_image
from ganpkg.data.sources import Fetched, Item, Listing, Skipped, copy_verbatim, sorted_files
from ganpkg.errors import UserError
from ganpkg.registry import DATA_SOURCES

if TYPE_CHECKING:
    from ganpkg.config import DataConfig

ROOT_SUBDIR = "root"
# Folder readers duplicate the image_folder source; FakeData has no files to snapshot; video,
# stereo and optical-flow datasets yield clips or image pairs, not single training images.
_EXCLUDED = {"VisionDataset", "DatasetFolder", "ImageFolder", "FakeData", "Kinetics", "HMDB51",
             "UCF101", "MovingMNIST", "FlyingChairs", "FlyingThings3D", "Sintel", "HD1K",
             "KittiFlow"}


def dataset_names() -> list[str]:
    """torchvision.datasets classes this source can take (they have a ``root`` folder)."""
    import torchvision.datasets as tvd

    names = []
    for name in tvd.__all__:
        cls = getattr(tvd, name, None)
        if (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)
                and name not in _EXCLUDED and not name.endswith("Stereo") and "root" in inspect.signature(cls).parameters):
            names.append(name)
    return sorted(names)


def dataset_class(name: str | None) -> type:
    """The torchvision dataset class called ``name``; unknown names list the valid ones."""
    names = dataset_names()
    if name not in names:
        raise UserError(f"data.torchvision_name: {name!r} is not a torchvision image dataset; "
                        f"valid: {', '.join(names)}")
    import torchvision.datasets as tvd

    return getattr(tvd, name)


def split_kwargs(cls: type, split: str) -> list[dict[str, Any]]:
    """Constructor arguments for ``data.split`` (datasets spell splits as train=… or split=…)."""
    params = inspect.signature(cls).parameters
    parts = ["train", "test"] if split == "all" else [split]
    if "train" in params:
        return [{"train": part == "train"} for part in parts]
    if "split" in params:
        return [{"split": part} for part in parts]
    return [{}]  # single-split datasets (e.g. LSUN by classes): data.split does not apply


def _open(cls: type, root: Path, kwargs: dict[str, Any], download: bool) -> Any:
    if "download" in inspect.signature(cls).parameters:
        kwargs = {**kwargs, "download": download}
    return cls(root=str(root), **kwargs)


def _placement_hint(cls: type, folder: Path) -> str:
    return (f"place the files torchvision.datasets.{cls.__name__} expects (what "
            f"{cls.__name__}(root=FOLDER, download=False) reads) under a folder and set "
            f"data.source_path to it (e.g. {folder})")


@DATA_SOURCES.register("torchvision")
class TorchvisionSource:
    """A torchvision dataset read through its own class; labels when the target is an int."""

    name = "torchvision"

    def ingest(self, config: DataConfig, dest: Path) -> list[Skipped]:
        cls = dataset_class(config.torchvision_name)
        root = dest / ROOT_SUBDIR
        if config.source_path:
            src = Path(config.source_path).expanduser()
            if not src.is_dir():
                raise UserError(f"data.source_path: {src} is not a folder; "
                                + _placement_hint(cls, src))
            for path in sorted_files(src):
                copy_verbatim(path, root / path.relative_to(src))
            download = False
        else:
            root.mkdir(parents=True)
            download = True
        for kwargs in split_kwargs(cls, config.split):
            try:
                _open(cls, root, kwargs, download)
            except Exception as err:  # noqa: BLE001 — network and format errors alike
                where = Path(config.source_path or f"~/datasets/{cls.__name__}")
                what = "its files are missing or unreadable" if config.source_path else (
                    "the download failed (no network?)")
                raise UserError(f"torchvision dataset {cls.__name__} ({kwargs or 'default'}): "
                                f"{what}: {type(err).__name__}: {err}; "
                                + _placement_hint(cls, where)) from None
        return []

    def items(self, raw: Path, snapshot: dict, config: DataConfig) -> Listing:
        cls = dataset_class(config.torchvision_name)
        items: list[Item] = []
        classes: list[str] = []
        for kwargs in split_kwargs(cls, config.split):
            try:
                dataset = _open(cls, raw / ROOT_SUBDIR, kwargs, download=False)
            except Exception as err:  # noqa: BLE001
                raise UserError(f"{raw / ROOT_SUBDIR}: torchvision.datasets.{cls.__name__} cannot "
                                f"read it ({type(err).__name__}: {err}); run `ganpkg data ingest`"
                                ) from None
            classes = [str(c) for c in getattr(dataset, "classes", [])] or classes
            tag = ",".join(f"{k}={v}" for k, v in kwargs.items()) or "all"
            items += [Item(f"{ROOT_SUBDIR}[{tag}][{i}]", _dataset_fetcher(dataset, i))
                      for i in range(len(dataset))]
        return Listing(items, classes)


def _dataset_fetcher(dataset: Any, i: int):
    def fetch() -> Fetched:
        image, target = dataset[i]
        if not hasattr(image, "mode"):  # some datasets return arrays or tensors
            arr = np.asarray(image)
            image = array_to_image(arr.astype(np.uint8))
        label = int(target) if isinstance(target, (int, np.integer)) else -1
        return Fetched(image, label)

    return fetch
