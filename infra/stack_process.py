"""Process plumbing of the loopback stack (infra/local_stack.py): spawn, health, stop, state."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class StackError(RuntimeError):
    """One line that names the service and where to look."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise StackError("no free port on 127.0.0.1")


def executable(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name}: executable not found beside {sys.executable} nor on PATH")
    return found


def spawn(name: str, cmd: list[str], stack: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start CMD in its own session, output to <stack>/<name>.log, PID to <stack>/<name>.pid."""
    log = stack / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    (stack / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(name: str, proc: subprocess.Popen, log: Path, check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise StackError(f"{name} exited (code {proc.returncode}) while starting; see {log}")
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise StackError(f"{name} not healthy after {timeout:.0f} s; see {log}")


def pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pids(pids: list[int], timeout: float = 20) -> None:
    """SIGTERM the process groups the PIDs lead (every start is a new session), wait, SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        live = [pid for pid in pids if pid_alive(pid)]
        if not live:
            break
        for pid in live:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(pid_alive(pid) for pid in live) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in pids:  # leftovers of the groups (workers) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def load_state(stack: Path) -> dict:
    path = stack / "stack.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(stack: Path, state: dict) -> None:
    write_private(stack / "stack.json", json.dumps(state, indent=1) + "\n")


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
