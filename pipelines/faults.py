"""Faults the tests inject (nothing else uses them): a crash in training, a pause at a flow stage."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ganpkg.callbacks import NullCallback


class InjectedFault(RuntimeError):
    """Raised by FaultOnce: a crash the retry test injects mid-training."""


class FaultOnce(NullCallback):
    """Crash training at ``step`` the first time only (a marker file remembers it)."""

    def __init__(self, step: int, run_dir: Path):
        self.step, self.marker = step, Path(run_dir) / "fault-injected"

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step >= self.step and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            raise InjectedFault(f"injected fault at step {step}")


FAULT_ENV = "GANPKG_TEST_FAULT_AT_STEP"


def injected_fault_step() -> int | None:
    """The step at which the retry test crashes training, from the environment: a test hook
    kept out of the flow's parameters (the deployment's run form shows those to users)."""
    value = os.environ.get(FAULT_ENV)
    return int(value) if value else None


PAUSE_ENV = "GANPKG_TEST_PAUSE_AT"  # data | evaluate | register | version
PAUSE_FILE_ENV = "GANPKG_TEST_PAUSE_FILE"


def pause_point(where: str) -> None:
    """With GANPKG_TEST_PAUSE_AT=WHERE, write WHERE to GANPKG_TEST_PAUSE_FILE and wait there for
    the test's signal: the interrupt tests kill the flow at a known stage, not at a guess."""
    if os.environ.get(PAUSE_ENV) == where:
        Path(os.environ[PAUSE_FILE_ENV]).write_text(where)
        time.sleep(600)
