"""Where training runs: device choice, seeding, RNG state capture, and torchrun's process group."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ganpkg.device import resolve_device


@dataclass(frozen=True)
class Runtime:
    """One process's view of the job: its device and its place among torchrun's ranks."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_runtime(preference: str) -> Runtime:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    device = resolve_device(preference, "train.device")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, dist.get_rank(), dist.get_world_size())


def stop_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every RNG that training touches; ask for deterministic kernels where they exist.

    Python's ``random`` is not one of them, and is left alone: MLflow and Prefect draw run
    names from it, and seeding it made every run of a seed share one name.
    """
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


# The thread count the bit-reproducible stages run with: CPU kernels split reductions by thread,
# so the same data and seed give other bytes with another count (and one thread exists anywhere).
REPRODUCIBLE_THREADS = 1


# The CPU code paths of a process whose bytes must not depend on the CPU it runs on. ATen picks
# its kernels by the CPU's vector units (AVX-512, AVX2, ...) and MKL its GEMM the same way, and
# their float sums differ in the last bits; "default" and "COMPATIBLE" are the paths every
# x86-64 CPU has. Both are read once, when torch and MKL load: a process must start with them
# (pipelines re-executes the extractor stage with them). oneDNN and NNPACK dispatch by CPU too,
# and are switched off inside ``reproducible``.
PINNED_CPU_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def cpu_code_paths() -> str:
    """'pinned' when this process runs the CPU-independent paths (PINNED_CPU_ENV), else the
    ATen capability it runs (then the bytes are reproducible on this CPU family only)."""
    capability = torch.backends.cpu.get_cpu_capability()
    pinned = capability == "DEFAULT" and os.environ.get("MKL_CBWR") == "COMPATIBLE"
    return "pinned" if pinned else f"native ({capability})"


@contextmanager
def reproducible(seed: int) -> Iterator[None]:
    """Bit-reproducible CPU work inside: one thread, deterministic kernels (an error where an
    op has none), no CPU-dispatched convolution libraries (oneDNN, NNPACK), torch seeded; the
    process's settings come back afterwards. Same bytes on any x86-64 CPU only in a process
    started with PINNED_CPU_ENV (``cpu_code_paths() == 'pinned'``)."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    mkldnn = torch.backends.mkldnn.enabled
    torch.set_num_threads(REPRODUCIBLE_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    nnpack = torch.backends.nnpack.set_flags(False)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict, warn_only=warn_only)
        torch.backends.mkldnn.enabled = mkldnn
        torch.backends.nnpack.set_flags(*nnpack)


def capture_rng(noise: torch.Generator) -> dict[str, Any]:
    """Every RNG state that affects what training does next."""
    state: dict[str, Any] = {"noise": noise.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], noise: torch.Generator) -> None:
    noise.set_state(state["noise"])
    torch.set_rng_state(state["torch_cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
