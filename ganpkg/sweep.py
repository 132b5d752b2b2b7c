"""Sweep specifications: ``--grid`` and ``--trial`` → one list of overrides per trial (pure).

The sweep flow (pipelines/sweep.py) runs the trials; this module only says what they are, so
the CLI refuses a bad entry with one line before Prefect starts.
"""

from __future__ import annotations

import itertools
import shlex

from ganpkg.config import parse_override
from ganpkg.errors import UserError

# What trials may vary; data, eval and registry stay fixed so their metrics compare.
VARIABLE_SECTIONS = ("model.", "train.")
GRID_HELP = "expected section.key=v1,v2,... e.g. train.lr_g=1e-4,2e-4"


def grid_trials(entries: list[str]) -> list[list[str]]:
    """``['train.lr_g=1e-4,2e-4', 'model.g_width=16,32']`` → the 4 combinations."""
    axes, keys = [], set()
    for entry in entries:
        key, sep, values = entry.partition("=")
        key = key.strip()
        choices = [v.strip() for v in values.split(",")]
        parts = key.split(".")
        if not sep or len(parts) < 2 or not all(parts) or not all(choices):
            raise UserError(f"--grid {entry!r}: {GRID_HELP}")
        if key in keys:
            raise UserError(f"--grid {entry!r}: {key} is given twice; list its values once")
        keys.add(key)
        axes.append([f"{key}={v}" for v in choices])
    return [list(combo) for combo in itertools.product(*axes)] if axes else []


def split_trial(text: str) -> list[str]:
    """``'train.lr_g=1e-4 model.g_width=16'`` → its overrides (shell quoting allowed)."""
    try:
        parts = shlex.split(text)
    except ValueError as err:
        raise UserError(f"--trial {text!r}: {err}") from None
    if not parts:
        raise UserError("--trial '': give at least one section.key=value")
    for part in parts:
        try:
            parse_override(part)
        except UserError:
            raise UserError(f"--trial {text!r}: {part!r} is not section.key=value") from None
    return parts


def sweep_trials(grid: list[str], trials: list[str]) -> list[list[str]]:
    """The grid's cross product, then each ``--trial``: one override list per trial."""
    out = grid_trials(grid) + [split_trial(t) for t in trials]
    if not out:
        raise UserError("nothing to sweep: give --grid section.key=v1,v2 and/or "
                        "--trial 'section.key=value ...'")
    return out


def check_trials(trials: list[list[str]], overrides: list[str] = ()) -> None:
    """Refuse what trials must not vary: only model.* and train.* keys differ between trials
    (they share one data version, evaluation protocol and gate, so their metrics compare),
    and no run_dir is given (each trial gets a folder of its own)."""
    for override in overrides:
        if override.partition("=")[0].strip() == "train.run_dir":
            raise UserError("--set train.run_dir: not in a sweep; each trial gets a folder of "
                            "its own under runs/<name>/<sweep run>/")
    for index, trial in enumerate(trials):
        for override in trial:
            key = override.partition("=")[0].strip()
            if not key.startswith(VARIABLE_SECTIONS) or key == "train.run_dir":
                raise UserError(f"sweep trial {index}: {key} cannot vary between trials; vary "
                                "model.* and train.* keys (train.run_dir is set per trial)")
