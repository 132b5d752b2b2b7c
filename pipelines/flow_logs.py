"""ganpkg's own log lines (training steps, evaluation, resume) in the Prefect flow run's logs.

Prefect sends only its own loggers to the API; training logs to ``ganpkg.*``, so the flow run
page showed "Finished in state Completed()" and nothing of the training. One API handler on
the ``ganpkg`` logger sends each record to the flow run of the thread that logged it (Prefect's
run context), so parallel flows of one process each get their own lines.
"""

from __future__ import annotations

import logging
import sys

from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler


class FlowRunLogHandler(APILogHandler):
    """Prefect's API handler that stays quiet outside a flow run (e.g. `ganpkg train`)."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], MissingContextError):
            return  # nothing to attach the line to; the terminal and the run's log have it
        super().handleError(record)


def send_ganpkg_logs_to_prefect() -> None:
    """Install the handler once per process (idempotent: flows and threads share it)."""
    logger = logging.getLogger("ganpkg")
    if not any(isinstance(h, FlowRunLogHandler) for h in logger.handlers):
        logger.addHandler(FlowRunLogHandler())
    logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
