"""The `ganpkg` command line (Typer). Bad input prints one line and exits 2, no traceback."""

import sys

import typer

from ganpkg.cli_common import ConfigOpt, SetOpt, console, resolve_config
from ganpkg.errors import UserError

__all__ = ["ConfigOpt", "SetOpt", "app", "console", "main", "resolve_config"]

app = typer.Typer(
    help="ganpkg: train, evaluate, register and sample GANs reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_subcommands() -> None:
    # Each stage's commands live beside its code; importing them here keeps one entry point.
    from ganpkg import cli_data, cli_eval, cli_flow, cli_registry, cli_train

    cli_flow.register(app)
    cli_train.register(app)
    cli_data.register(app)
    cli_eval.register(app)
    cli_registry.register(app)


def main() -> None:
    """Console-script entry point."""
    _register_subcommands()
    try:
        app()
    except UserError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
