"""Options and helpers every `ganpkg` command module shares (they import this, never each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ganpkg.config import Config, load_config

console = Console(stderr=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="params.yaml to read (one section per stage).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key: section.key=value (repeatable)."),
]


def resolve_config(config: Path, overrides: list[str] | None) -> Config:
    """Load params.yaml (or the embedded defaults when it is absent) with --set overrides."""
    path = config if config.exists() or str(config) != "params.yaml" else None
    return load_config(path, overrides or [])


def config_path(config: Path) -> str | None:
    """What the flows get: the params file, or None for the embedded defaults."""
    return str(config) if config.exists() else None


def say(text: str) -> None:
    """One plain line on stderr (no rich markup or highlighting: paths and brackets verbatim)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)
