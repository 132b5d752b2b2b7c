"""The one error type for bad input: the CLI prints its message on one line, no traceback."""


class UserError(ValueError):
    """Bad input the user controls (a config key, a file, a flag).

    The message names the key or file and what is allowed. Internal invariants use
    ``assert`` instead, so a traceback always means a bug in ganpkg, never a typo.
    """


def is_interrupt(err: BaseException) -> bool:
    """Ctrl-C or a termination signal turned into an exception: KeyboardInterrupt, or an
    orchestrator's own (Prefect's TerminationSignal). None of them is an ``Exception``; a run
    they stop is interrupted, not failed, and resumable."""
    return not isinstance(err, Exception)
