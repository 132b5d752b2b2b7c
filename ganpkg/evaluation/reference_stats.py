"""The real images as torch-fidelity input, and how their features are cached.

ganpkg caches the reference's features itself, one ``.npy`` per layer read without pickle. A
name alone would silently reuse stale features after the data or the extractor changed, so the
name is built from the md5 of the prepared bytes, the split and its size and the sha256 of the
extractor's weights (plus the extractor's and the layer's names).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ganpkg.data.prepared import IMAGES, LABELS, PreparedDataset
from ganpkg.device import resolve_device
from ganpkg.files import hash_bytes, hash_file, write_atomic

if TYPE_CHECKING:
    from ganpkg.config import EvalConfig

# The split must not move when eval.seed changes (it decides which images the domain
# extractor never saw), so it has its own fixed seed.
SPLIT_SEED = 20_170_608


class UInt8Images(Dataset):
    """uint8 N×C×H×W images (array, memmap or tensor) → uint8 3×H×W tensors, as extractors need.

    Grayscale is repeated to three channels, which is exact, and is what torch-fidelity's own
    PNG loader (``Image.convert("RGB")``) does to a grayscale PNG.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, indices: np.ndarray | None = None):
        self.images = images
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = torch.as_tensor(np.array(self.images[int(self.indices[i])]))  # copy: memmaps are read-only
        assert image.dtype == torch.uint8 and image.dim() == 3, (image.dtype, image.shape)
        return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Images [start, stop) as one uint8 N×3×H×W tensor."""
        return torch.stack([self[i] for i in range(start, min(stop, len(self)))])


def split_indices(n: int, holdout_fraction: float) -> dict[str, np.ndarray]:
    """Fixed partition of the prepared images: `train`, `holdout` and `all` (each sorted)."""
    order = np.random.RandomState(SPLIT_SEED).permutation(n)
    n_holdout = min(max(1, round(n * holdout_fraction)), n - 1)
    return {
        "all": np.arange(n),
        "train": np.sort(order[n_holdout:]),
        "holdout": np.sort(order[:n_holdout]),
    }


def reference_indices(n: int, cfg: EvalConfig) -> np.ndarray:
    """Indices of the reference images: the split, capped at reference_max_images (fixed pick)."""
    chosen = split_indices(n, cfg.holdout_fraction)[cfg.reference_split]
    cap = cfg.reference_max_images
    if cap is not None and cap < len(chosen):
        pick = np.random.RandomState(SPLIT_SEED + 1).permutation(len(chosen))[:cap]
        chosen = np.sort(chosen[pick])
    return chosen


def prepared_md5(dataset: PreparedDataset) -> str:
    """md5 naming the prepared images and labels (of their two md5s; each file hashed once)."""
    images, labels = (hash_file(Path(dataset.root) / name, "md5") for name in (IMAGES, LABELS))
    return hash_bytes(f"{images} {labels}".encode(), "md5")


def reference_cache_name(data_md5: str, split: str, n: int, weights_sha256: str,
                         holdout_fraction: float) -> str:
    """torch-fidelity cache name of a reference set: every input that changes it is in it."""
    part = split if split == "all" else f"{split}{holdout_fraction:g}"
    return f"ganpkg-{data_md5[:16]}-{part}-n{n}-w{weights_sha256[:16]}"


def fidelity_device_kwargs(device: str) -> dict:
    """torch-fidelity's `cuda` flag from eval.device (auto → CUDA when visible)."""
    return {"cuda": resolve_device(device, "eval.device").type == "cuda"}


def fid_layer(spec) -> str:
    """The extractor's feature layer that FID, KID, PR and the memorization check use."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    return FEATURE_EXTRACTORS_REGISTRY[spec.fidelity_name].get_default_feature_layer_for_metric(
        "fid")


def reference_input(dataset: PreparedDataset, cfg: EvalConfig, spec,
                    split: str | None = None) -> tuple[UInt8Images, str]:
    """The reference images (eval.reference_split, or `split` uncapped) and their cache name."""
    if split is None:
        indices = reference_indices(len(dataset), cfg)
        split = cfg.reference_split
    else:
        indices = split_indices(len(dataset), cfg.holdout_fraction)[split]
    name = reference_cache_name(prepared_md5(dataset), split, len(indices), spec.weights_sha256,
                                cfg.holdout_fraction)
    return UInt8Images(dataset.images, indices), name


def reference_features(dataset: PreparedDataset, cfg: EvalConfig, spec, split: str | None = None,
                       layers: list[str] | None = None,
                       extractor=None) -> dict[str, torch.Tensor]:
    """Features of the reference images (or of `split`, uncapped), cached by content keys.

    ``spec`` is the resolved ``ExtractorSpec``; ``extractor`` one already built for ``layers``
    (else it is built here). The cache holds one ``.npy`` per layer, read with
    ``allow_pickle=False``: a planted file can hold wrong numbers at worst, never code (unlike
    torch-fidelity's own cache, a ``torch.load`` of arbitrary pickles, which is not used).
    """
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id

    layers = layers or [fid_layer(spec)]
    images, name = reference_input(dataset, cfg, spec, split)
    paths = {layer: Path(cfg.cache_dir) / f"{name}-{spec.fidelity_name}-{layer}.npy"
             for layer in layers}
    if all(path.is_file() for path in paths.values()):
        cached = {layer: _load_features(path, len(images)) for layer, path in paths.items()}
        if all(v is not None for v in cached.values()):
            return cached
    kwargs = dict(input2=images, batch_size=cfg.batch_size, verbose=False, save_cpu_ram=True,
                  feature_extractor_weights_path=spec.weights_path,
                  **fidelity_device_kwargs(cfg.device))
    if extractor is None:
        extractor = create_feature_extractor(spec.fidelity_name, layers, **kwargs)
    features = extract_featuresdict_from_input_id(2, extractor, **kwargs)
    for layer, path in paths.items():
        array = features[layer].numpy()
        write_atomic(path, lambda f, a=array: np.save(f, a, allow_pickle=False))
    return {layer: features[layer] for layer in layers}


def _load_features(path: Path, n: int) -> torch.Tensor | None:
    """A cached feature array, or None when it is unreadable or of the wrong shape."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.ndim != 2 or len(array) != n or array.dtype != np.float32:
        return None
    return torch.from_numpy(array)


def reference_statistics(dataset: PreparedDataset, cfg: EvalConfig, spec) -> dict[str, np.ndarray]:
    """FID statistics (mu, sigma) of the reference, from its cached features.

    A pipeline may call this right after `prepare` so that every later evaluation only pays
    for the generated samples.
    """
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics

    layer = fid_layer(spec)
    return fid_featuresdict_to_statistics(reference_features(dataset, cfg, spec, layers=[layer]),
                                          layer)
