"""An interrupt that arrives while callbacks write lands after they are done, not half-way."""

import os
import signal

import pytest

from ganpkg.callbacks import CallbackList, NullCallback


class Writes(NullCallback):
    def __init__(self, log, interrupt=False):
        self.log, self.interrupt = log, interrupt

    def on_step(self, step, metrics):
        if self.interrupt:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a store write
        self.log.append(step)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, whatever an earlier test of the session left
    installed (a full run once left another handler, and the interrupt went to it)."""
    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved if saved is not None else signal.default_int_handler)


def test_ctrl_c_inside_a_callback_is_raised_after_every_callback_ran(python_sigint):
    log = []
    callbacks = CallbackList([Writes(log, interrupt=True), Writes(log)])
    with pytest.raises(KeyboardInterrupt):
        callbacks.on_step(3, {})
    assert log == [3, 3]  # both writes completed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
