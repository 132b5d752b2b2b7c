"""Which images each step trains on, in what order, and where they are read from.

``DataOrder`` is the reproducible shuffle whose state a checkpoint stores as two integers;
``images_on_device`` decides whether batches come from a device copy or from the memmap.
"""

from __future__ import annotations

import numpy as np
import torch

from ganpkg.data.prepared import PreparedDataset
from ganpkg.errors import UserError


class DataOrder:
    """Shuffled epochs, reproducible from (seed, epoch) alone, so its state is two integers."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, position: int = 0):
        if n < batch_size:
            raise UserError(f"train.batch_size {batch_size} exceeds the dataset's {n} images")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.position = epoch, position
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=gen).numpy()

    def next(self) -> np.ndarray:
        """Indices of the next global batch (the incomplete tail of an epoch is dropped)."""
        if self.position + self.batch_size > self.n:
            self.epoch, self.position = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        out = self._perm[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


DEVICE_MEMORY_SHARE = 0.25  # data_on_device=auto: at most this share of the GPU's free memory


def images_on_device(data: PreparedDataset, device: torch.device,
                     mode: str) -> torch.Tensor | None:
    """The whole prepared uint8 array on ``device`` (train.data_on_device), or None to read
    batches from the memmap. A batch drawn from either is the same images in the same order."""
    if mode == "never" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        if data.images.nbytes > DEVICE_MEMORY_SHARE * free:
            return None
    return torch.from_numpy(np.ascontiguousarray(data.images)).to(device)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``x`` on ``device`` (asynchronously), in channels_last layout when asked."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
