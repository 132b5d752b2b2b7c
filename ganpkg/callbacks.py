"""How training reports to the outside world without importing it.

pipelines/ implements a ``TrainingCallback`` that logs to MLflow; the CLI uses a rich progress
printer. ganpkg itself only calls these methods.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class TrainingCallback(Protocol):
    """Every method is optional in spirit: subclass ``NullCallback`` and override what you need."""

    def on_start(self, config: dict, run_dir: Path) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_sample(self, step: int, grid_path: Path) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...

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

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_end(self, status: str, run_dir: Path) -> None:
        pass


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block take effect when it ends.

    Callbacks write to stores (MLflow's sqlite, files): an exception raised half-way through a
    write can leave a transaction open and the store locked for the very writes that would
    record the interruption. Deferred, the interrupt lands between two training steps, with
    whichever handler was installed (the command line's, an orchestrator's).
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only; nothing to defer here
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: handler for sig, handler in previous.items() if handler is not None}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in caught:
            signal.raise_signal(sig)


class CallbackList(NullCallback):
    """Fan one event out to several callbacks, in order, with interrupts deferred until all
    have run (see signals_deferred)."""

    def __init__(self, callbacks: list[TrainingCallback]):
        self.callbacks = list(callbacks)

    def on_start(self, config: dict, run_dir: Path) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_start(config, run_dir)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_step(step, metrics)

    def on_sample(self, step: int, grid_path: Path) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_sample(step, grid_path)

    def on_checkpoint(self, step: int, path: Path) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_checkpoint(step, path)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_eval(step, metrics)

    def on_end(self, status: str, run_dir: Path) -> None:
        with signals_deferred():
            for cb in self.callbacks:
                cb.on_end(status, run_dir)
