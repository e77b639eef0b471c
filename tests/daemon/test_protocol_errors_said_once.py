"""A process breaking the protocol on many connections is logged once, and counted in status each time.

A WARNING went out per bad connection: a process sending garbage on 1,000 connections logged 1,000
lines, and one closing 1,000 connections in the middle of their Hello logged and counted 1,000
protocol errors, though a client killed while it sends is not one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess

from trackd.protocol import PROTOCOL_VERSION, Hello, encode_frame

pytestmark = pytest.mark.timeout(120)

CONNECTIONS = 50
GARBAGE = b"\x00\x00\x00\x01\xc1"  # a frame of one byte msgpack never uses


def send_and_wait_for_close(socket_path: Path, data: bytes) -> bytes:
    """Connect, send ``data``, end our side, and return what the daemon sent up to its close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(socket_path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


# argv: socket path. Another process sending garbage: its own line.
OTHER_PROCESS = f"""
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(30)
    sock.connect(sys.argv[1])
    sock.sendall({GARBAGE!r})
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
"""


def test_garbage_on_many_connections_is_one_warning_per_process(socket_path: Path) -> None:
    daemon = DaemonProcess(socket_path).start()
    try:
        for _ in range(CONNECTIONS):
            assert b"bad_frame" in send_and_wait_for_close(socket_path, GARBAGE)
        other = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(socket_path)], timeout=60, capture_output=True, text=True)
        assert other.returncode == 0, other.stderr
        assert daemon.status()["protocol_errors"] == CONNECTIONS + 1
        lines = [line for line in daemon.log().splitlines() if "broke the protocol" in line]
        # This used to be 51 lines.
        assert len(lines) == 2, lines
        assert f"a connection of pid {os.getpid()} broke the protocol and was disconnected: " in lines[0], lines
        assert "a connection of pid " in lines[1] and f" pid {os.getpid()} " not in lines[1], lines
        assert lines[0].endswith("(logged once per process; status counts protocol errors)"), lines
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_connections_closed_in_the_middle_of_their_hello_are_not_protocol_errors(socket_path: Path, store: Path) -> None:
    hello = encode_frame(Hello(protocol_version=PROTOCOL_VERSION, client_id="cut", pid=os.getpid(), host="h", store_root=str(store)))
    daemon = DaemonProcess(socket_path).start()
    try:
        for cut in (2, len(hello) // 2, len(hello) - 1):  # in its header, in its body, its last byte missing
            for _ in range(CONNECTIONS // 3):
                send_and_wait_for_close(socket_path, hello[:cut])
        status = daemon.status()
        # This used to count each one, and log a WARNING for each.
        assert status["protocol_errors"] == 0, status
        log = daemon.log()
        assert "broke the protocol" not in log, log
        said = f"a connection of pid {os.getpid()} closed in the middle of its Hello (logged once per process)"
        assert log.count(said) == 1, log
    finally:
        assert daemon.stop() == 0, daemon.log()
