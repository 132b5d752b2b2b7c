"""The stack and the project its tests share: started once per session, not once per file.

The stack test files build on one another, and pytest runs them in name order, which is the
order they need: test_local_stack.py runs the flow (the first COMPLETED `retrain` run, the
champion, the pushed DVC outputs a second clone pulls), test_stack_prefect_worker.py deploys
retrain/scheduled and then triggers it by a data event, test_stack_registry_backup.py backs up
and restores the registry those runs filled. A new file goes where its name puts it.
"""

from pathlib import Path

import pytest
from stack_helpers import Stack, descendants, local_stack, make_project, stack_cli

_started: list[Stack] = []  # the session's stack until it is stopped


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The stack starting in a tmp folder, for this session's stack tests; stopped as soon as
    the last of them is done (below), not at the end of the session."""
    stack = Stack(tmp_path_factory.mktemp("stack") / "stack")
    _started.append(stack)
    try:
        yield stack
    finally:
        stop_started()


def pytest_runtest_teardown(item, nextitem):
    """After the last test of this folder the stack goes down: its servers must not idle
    beside the tests that follow (2 cores)."""
    if nextitem is None or Path(nextitem.path).parent != Path(__file__).parent:
        stop_started()


def stop_started() -> None:
    """`down --purge`, then check that every process the stack started (and their children)
    is gone."""
    while _started:
        stack = _started.pop()
        if stack.proc.poll() is None:
            stack.proc.communicate(timeout=300)  # `up` cleans up after itself on failure
        pids = [int(p.read_text()) for p in stack.dir.glob("*.pid")]
        processes = descendants(pids)
        down = stack_cli("down", "--dir", str(stack.dir), "--purge", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert pids, "no PID files"
        left = {pid for pid in processes if local_stack.pid_alive(pid)}
        assert not left, f"still running after down: {sorted(left)}"
        assert not list(stack.dir.glob("*.pid"))


@pytest.fixture(scope="session")
def project(stack, tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("stack-project"))  # while the stack starts
