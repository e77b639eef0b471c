"""What `trackd daemon status` says of a daemon that cannot answer: stopped, or killed before a clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess

pytestmark = pytest.mark.timeout(60)


def status(socket_path: Path, spool_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process states are read from /proc")
def test_status_of_a_stopped_daemon_says_so_without_asking_it(socket_path: Path, tmp_path: Path) -> None:
    # Status sent its Hello and waited out the 5 s handshake timeout before saying what the
    # daemon's process state said all along.
    daemon = DaemonProcess(socket_path).start()
    try:
        daemon.signal(signal.SIGSTOP)
        try:
            result = status(socket_path, tmp_path)
        finally:
            daemon.signal(signal.SIGCONT)
        assert result.returncode == 1
        assert result.stderr == (
            f"trackd daemon pid {daemon.pid} listens on {socket_path} but does not answer; it is stopped (SIGSTOP, or Ctrl-Z "
            f"in its terminal): `kill -CONT {daemon.pid}` resumes it, `trackd daemon stop` ends it\n"
        )
    finally:
        assert daemon.stop() == 0, daemon.log()
