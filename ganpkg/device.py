"""The one device choice of every stage: ``auto`` | ``cpu`` | ``cuda``.

``auto`` takes the GPU when one is visible; an explicit ``cuda`` without one is a user error
naming the key, never a silent fallback to the CPU (a run planned for a GPU would take days).
"""

from __future__ import annotations

import os

import torch

from ganpkg.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(preference: str, key: str) -> torch.device:
    """``preference`` (the value of params key ``key``, e.g. train.device) → a torch.device.

    Under torchrun each rank takes the GPU of its LOCAL_RANK.
    """
    if preference not in DEVICE_CHOICES:
        raise UserError(f"{key}: {preference!r} unknown; allowed: {', '.join(DEVICE_CHOICES)}")
    if preference == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if preference == "cuda":
            raise UserError(f"{key} is 'cuda' but no CUDA device is visible; use auto or cpu")
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def available_memory() -> int | None:
    """Bytes the OS can give this process now (Linux MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
