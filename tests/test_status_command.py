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


def test_a_daemon_killed_with_sigkill_is_named_by_the_next_one_in_its_log_and_status(socket_path: Path, tmp_path: Path) -> None:
    # A killed daemon left its pid file and no exit report, and the next one started without a word.
    killed = DaemonProcess(socket_path).start()
    killed.kill()
    daemon = DaemonProcess(socket_path).start()
    try:
        assert daemon.status()["unclean_exit_pid"] == killed.pid
        result = status(socket_path, tmp_path)
        assert result.returncode == 0, result.stderr
        assert (
            f"\n  last daemon   pid {killed.pid} ended without a clean exit before this one started (killed or crashed: see {daemon.paths.log})\n"
        ) in result.stdout
    finally:
        assert daemon.stop() == 0, daemon.log()
    warned = [line for line in daemon.log().splitlines() if " WARNING " in line]
    assert len(warned) == 1 and f"The previous daemon pid {killed.pid} ended without a clean exit (killed by kill -9 " in warned[0], warned
    # Stopped cleanly, it is no one's news: the next daemon says nothing.
    daemon = DaemonProcess(socket_path).start()
    try:
        assert daemon.status()["unclean_exit_pid"] is None
        assert "last daemon" not in status(socket_path, tmp_path).stdout
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert " WARNING " not in daemon.log().split(f"pid {daemon.pid} ", 1)[1], daemon.log()


def test_status_without_a_daemon_names_the_socket_once(socket_path: Path, tmp_path: Path) -> None:
    # "trackd daemon is not running on X (The trackd daemon at X is unreachable: ...)".
    result = status(socket_path, tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"trackd daemon is not running on {socket_path} (connecting failed: No such file or directory)\n"
