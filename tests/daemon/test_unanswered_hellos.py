"""Connections their clients closed before the daemon answered their Hello (attempts given up while
the daemon was stopped) are ignored by the daemon when it resumes: not attached, not logged one by
one, but counted in one line. A real daemon, stopped and resumed with signals, and real sockets.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, wait_for

from trackd.protocol import PROTOCOL_VERSION, Connection, Hello, Role, Welcome

ATTEMPTS = 20


def _hello_and_close(socket_path: Path, store: Path, client_id: str) -> None:
    """Connect, send a Hello and close at once: an attempt given up before its Welcome."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path))
        sock.sendall(Connection(Role.CLIENT).send(Hello(
            protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=os.getpid(), host="test", store_root=str(store),
        )))


@pytest.mark.timeout(60)
def test_hellos_closed_before_a_stopped_daemon_answered_are_ignored_in_one_line(daemon: DaemonProcess, store: Path) -> None:
    store.mkdir()
    daemon.signal(signal.SIGSTOP)
    try:
        for _ in range(ATTEMPTS):
            _hello_and_close(daemon.paths.socket, store, "gave-up")
    finally:
        daemon.signal(signal.SIGCONT)
    wait_for(lambda: "Ignored 20 connections closed by their clients before" in daemon.log(), 30, message="the one line")
    log = daemon.log()
    # Each used to be attached to the client's session and logged twice, "connected" and "disconnected".
    assert "client pid" not in log, log
    assert log.count("closed by their clients before this daemon answered their Hello") == 1, log
    # The client the attempts were for is served as usual by its next one.
    live = RawClient(daemon.paths.socket)
    try:
        assert isinstance(live.hello(str(store), client_id="gave-up"), Welcome)
    finally:
        live.close()
    wait_for(lambda: "connected (client gave-up," in daemon.log(), 10, message="the live connection")
