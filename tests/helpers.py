"""Real processes for tests: a daemon on a short socket path, and Python children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trackd._paths import DaemonPaths
from trackd.client._control import query_status
from trackd.client._launcher import daemon_answers

# AF_UNIX paths are limited to about 104-108 bytes, so sockets live in a short folder under /tmp
# rather than in pytest's deep tmp_path.
SOCKET_PARENT = Path(tempfile.gettempdir())


def short_socket_path() -> Path:
    """A fresh private socket path short enough for AF_UNIX."""
    directory = Path(tempfile.mkdtemp(prefix="td-", dir=SOCKET_PARENT))
    return directory / "d.sock"


def wait_for(condition: object, timeout: float = 10.0, interval: float = 0.01, message: str = "condition") -> None:
    """Wait until ``condition()`` is true, failing the test after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class DaemonProcess:
    """A real trackd daemon in its own process."""

    def __init__(self, socket_path: Path, *extra_args: str) -> None:
        self.paths = DaemonPaths(socket_path)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        args = [sys.executable, "-m", "trackd.daemon", "--socket", str(self.paths.socket), "--log-file", str(self.paths.log), *self.extra_args]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: daemon_answers(self.paths.socket, 0.2) or self.process.poll() is not None, timeout, message="daemon start")  # type: ignore[union-attr]
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}: {self.log()}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def status(self) -> dict[str, object]:
        return query_status(self.paths.socket)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def log(self) -> str:
        try:
            return self.paths.log.read_text()
        except OSError:
            return ""


def child_env(socket_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a child process that logs through the test's daemon."""
    env = dict(os.environ)
    env["TRACKD_SOCKET"] = str(socket_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter and return its result (never raises on a non-zero exit)."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
