"""Wall time per flow stage, so the report can show the flow's own overhead."""

from __future__ import annotations

import time
from contextlib import contextmanager


class StageClock:
    """``with clock("train"): ...`` adds that block's seconds under "train"."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self.started
