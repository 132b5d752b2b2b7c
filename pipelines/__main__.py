"""`python -m pipelines …` is the `ganpkg` command (e.g. under torchrun: -m pipelines train)."""

from pipelines.cli import main

main()
