"""The `ganpkg` command line (Typer): one module per command group, wired together here.

    data.py      ganpkg data ingest | prepare | verify | push | lineage
    train.py     ganpkg train, ganpkg sample
    evaluation.py  ganpkg evaluate, ganpkg train-extractor
    flow.py      ganpkg run, ganpkg sweep, ganpkg serve      (Prefect)
    registry.py  ganpkg promote, ganpkg lineage, ganpkg leaderboard   (MLflow)

A new command goes into the module of its group (or a new module with a ``register(root)``
added to GROUPS). Modules import Prefect, MLflow and DVC inside their commands only, so
`ganpkg train`, `evaluate` and `sample --checkpoint` run where only PyTorch is installed. Bad
input prints one line and exits 2, no traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

import ganpkg
from ganpkg.errors import UserError
from pipelines.cli import data, evaluation, flow, registry, train
from pipelines.cli.common import console

GROUPS = (flow, train, data, evaluation, registry)

app = typer.Typer(
    help="ganpkg: train, evaluate, register and sample GANs reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts verbatim: "[default: …]" and brackets stay visible
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ganpkg {ganpkg.__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """ganpkg: train, evaluate, register and sample GANs reproducibly."""


for _group in GROUPS:
    _group.register(app)


def main() -> None:
    """Console-script entry point (`ganpkg`, `python -m pipelines`)."""
    # SIGTERM unwinds as Ctrl-C does (children stop, runs close); Typer exits 130 on it.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except UserError as err:
        console.print(f"error: {err}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except OSError as err:  # read-only or full disk, permissions, a missing folder
        console.print(f"error: {describe_os_error(err)}", highlight=False, soft_wrap=True,
                      markup=False)
        sys.exit(1)
    except Exception as err:
        line = store_failure(err)
        if line is None:
            raise  # a bug: its traceback is what a report needs
        console.print(f"error: {line}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(1)


def store_failure(err: BaseException) -> str | None:
    """'MLflow store URI: what the database said' when ``err`` (or what caused it) is the
    tracking store's database refusing (damaged, read-only, full); else None."""
    from pipelines.preflight import store_refused
    from pipelines.registry_load import resolve_tracking_uri

    seen = err
    while seen is not None:
        module = type(seen).__module__
        text = str(seen)
        if module.startswith(("sqlalchemy", "sqlite3")) or "(sqlite3." in text:
            return store_refused(resolve_tracking_uri(), text.split("\n")[0].split(") ", 1)[-1][:200])
        seen = seen.__cause__ or seen.__context__
    return None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def describe_os_error(err: OSError) -> str:
    """'PATH: No space left on device', naming the file the OS refused."""
    where = err.filename if err.filename is not None else "a file"
    if err.filename2 is not None:
        where = f"{err.filename} -> {err.filename2}"
    return f"{where}: {err.strerror or err}"
