"""A rich progress bar as a training callback: step, losses and images/s on one live line."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ganpkg.callbacks import NullCallback


class RichProgress(NullCallback):
    """Live progress on stderr; checkpoints and samples are printed as they are written."""

    def __init__(self, total_steps: int, console: Console | None = None):
        self.total = total_steps
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = None

    def on_start(self, config: dict, run_dir: Path) -> None:
        self.console.print(f"run dir: {run_dir}")
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.total, stats="")

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        stats = (f"D {metrics['loss_d']:.3f}  G {metrics['loss_g']:.3f}  "
                 f"{metrics['images_per_s']:.0f} img/s")
        self.progress.update(self.task, completed=step, stats=stats)
        if not self.console.is_terminal:  # logs and CI: a live bar draws nothing there
            self.console.print(f"step {step}/{self.total}  {stats}", highlight=False)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.progress.update(self.task, completed=step)
        self.progress.console.print(f"step {step}: checkpoint {path}")

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        """A point of the FID curve, above the bar."""
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.progress.console.print(f"step {step}: {shown}", highlight=False)

    def on_end(self, status: str, run_dir: Path) -> None:
        self.progress.stop()
        self.console.print(f"training {status.lower()}: {run_dir}")
