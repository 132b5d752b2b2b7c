"""How training reports to the outside world without importing it.

pipelines/ implements a ``TrainingCallback`` that logs to MLflow; the CLI uses a rich progress
printer. ganpkg itself only calls these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TrainingCallback(Protocol):
    """Every method is optional in spirit: subclass ``NullCallback`` and override what you need."""

    def on_start(self, config: dict, run_dir: Path) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_sample(self, step: int, grid_path: Path) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_end(self, status: str, run_dir: Path) -> None: ...


class NullCallback:
    """A callback that does nothing; the base for partial implementations."""

    def on_start(self, config: dict, run_dir: Path) -> None:
        pass

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_sample(self, step: int, grid_path: Path) -> None:
        pass

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def on_end(self, status: str, run_dir: Path) -> None:
        pass


class CallbackList(NullCallback):
    """Fan one event out to several callbacks, in order."""

    def __init__(self, callbacks: list[TrainingCallback]):
        self.callbacks = list(callbacks)

    def on_start(self, config: dict, run_dir: Path) -> None:
        for cb in self.callbacks:
            cb.on_start(config, run_dir)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_step(step, metrics)

    def on_sample(self, step: int, grid_path: Path) -> None:
        for cb in self.callbacks:
            cb.on_sample(step, grid_path)

    def on_checkpoint(self, step: int, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(step, path)

    def on_end(self, status: str, run_dir: Path) -> None:
        for cb in self.callbacks:
            cb.on_end(status, run_dir)
