"""A daemon whose listen queue is full for a moment is waited for, not said to be "not running"."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess

pytestmark = pytest.mark.timeout(60)


def fill_listen_queue(path: Path) -> list[socket.socket]:
    """Connections queued at ``path`` until its listener's queue takes no more (its owner stopped)."""
    queued: list[socket.socket] = []
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:  # EAGAIN: the queue is full
            sock.close()
            return queued
        queued.append(sock)
        assert len(queued) < 10_000, "the listen queue never filled"


def test_status_waits_for_a_full_listen_queue_to_drain(socket_path: Path) -> None:
    # A connect with a timeout is non-blocking; on a Unix socket whose queue is full it failed with
    # EAGAIN at once, and status said "trackd daemon is not running on ..." of a running daemon.
    daemon = DaemonProcess(socket_path).start()
    queued: list[socket.socket] = []
    try:
        daemon.signal(signal.SIGSTOP)
        queued = fill_listen_queue(socket_path)
        # Status says at once that a daemon its pid file names is stopped: without the file, it asks,
        # as of a daemon busy (not stopped) while a burst of clients fills its queue.
        daemon.paths.pid.rename(daemon.paths.pid.with_name("pid-aside"))
        status = subprocess.Popen(
            [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(socket_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(1.0)  # the old code had answered by now; the queue is full all along
        for sock in queued:
            sock.close()  # still queued: the daemon accepts each, finds it closed, and serves the next
        daemon.signal(signal.SIGCONT)
        out, err = status.communicate(timeout=30)
        assert status.returncode == 0, err
        assert f"trackd daemon pid {daemon.pid} " in out, out
    finally:
        for sock in queued:
            sock.close()
        daemon.signal(signal.SIGCONT)
        assert daemon.stop() == 0, daemon.log()
