"""The one error type for bad input: the CLI prints its message on one line, no traceback."""

import errno


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


# A second try meets the same disk: full, read-only, over quota, or a path of the wrong kind.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                     errno.EEXIST, errno.EACCES, errno.EPERM}


def is_permanent(err: BaseException) -> bool:
    """A failure that retrying cannot fix: bad input, or the disk refusing for good. Transient
    ones (a server not answering, a lock held a moment) are everything else."""
    return isinstance(err, UserError) or (isinstance(err, OSError)
                                          and err.errno in _PERMANENT_ERRNOS)
