"""Self-describing checkpoints: everything needed to continue exactly, written atomically.

A checkpoint holds G, D, the EMA generator, both optimizers, the step and data-order position,
every RNG state and the resolved config, so a run killed at any moment resumes to the same
result bit for bit (on CPU). Files are plain ``torch.save`` dicts of tensors and builtins, so
``torch.load(weights_only=True)`` reads them: no pickled classes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganpkg import files
from ganpkg.config import Config, config_from_dict
from ganpkg.errors import UserError
from ganpkg.files import write_atomic
from ganpkg.networks import build_generator

FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first (temp files of an interrupted write ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` through ``files.write_atomic``: a kill at any moment leaves either the old
    file or the new one, never half of one."""
    def save(handle) -> None:
        try:
            torch.save(state, handle)
        except RuntimeError as err:  # torch's zip writer hides a full disk behind its own error
            cause = err.__context__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror, str(path)) from err
            raise

    return write_atomic(path, save)


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


def remove_partial_writes(folder: str | Path) -> None:
    """Temp files of a checkpoint write that a kill interrupted; only one process writes here."""
    files.remove_partial_writes(folder, ".step-*.tmp")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (weights only: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  torch.load fails in many ways on a foreign file
        raise UserError(f"{path}: not a readable ganpkg checkpoint ({err.__class__.__name__})")
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise UserError(f"{path}: not a ganpkg checkpoint (format {FORMAT_VERSION} expected)")
    return state


def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch.compile and DDP wrap modules; store plain names so any loader can read them."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("_orig_mod.", "module."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def generator_from_state(state: dict[str, Any], ema: bool = True,
                         source: str = "checkpoint") -> tuple[nn.Module, Config]:
    """Rebuild the (EMA) generator described by a checkpoint dict, in eval mode on CPU.

    A checkpoint whose weights do not fit its own config, or hold NaN or infinite values, is a
    UserError naming the first mismatch or the count: a broken generator must not be sampled or
    measured as if it were a poor one."""
    config = config_from_dict(state["config"], origin="checkpoint config")
    g = build_generator(config.model, state["channels"], state["resolution"])
    key = "g_ema" if ema else "g"
    if not isinstance(state.get(key), dict):
        raise UserError(f"{source}: has no {key} weights; not a complete ganpkg checkpoint")
    try:
        g.load_state_dict(state[key])
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise UserError(f"{source}: its {key} weights do not fit its own config (model "
                        f"{config.model.arch}, g_width {config.model.g_width}): "
                        f"{(lines or [str(err)])[0][:200]}") from None
    bad = sum(int((~torch.isfinite(t)).sum()) for t in g.state_dict().values()
              if t.is_floating_point())
    if bad:
        raise UserError(f"{source}: {bad} of its {key} weights are NaN or infinite; the "
                        f"generator is broken (a diverged run?): use an earlier checkpoint")
    return g.eval().requires_grad_(False), config


def load_generator(path: str | Path, ema: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """(generator in eval mode, info) from a checkpoint; info has config, step, z_dim, shape."""
    state = load_checkpoint(path)
    g, config = generator_from_state(state, ema=ema, source=str(path))
    info = {
        "config": state["config"],
        "step": state["step"],
        "z_dim": config.model.z_dim,
        "channels": state["channels"],
        "resolution": state["resolution"],
        "path": str(path),
    }
    return g, info
