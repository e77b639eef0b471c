"""The client's socket adapter: connect, send bytes, read available bytes. Only the sender thread uses it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import DaemonUnavailable

RECV_SIZE = 256 * 1024


@contextlib.contextmanager
def map_socket_errors(path: Path) -> Iterator[None]:
    """Turn an OSError from the socket into DaemonUnavailable, in one place."""
    try:
        yield
    except OSError as exc:
        raise DaemonUnavailable(f"The trackd daemon at {path} is unreachable: {exc.strerror or exc}.") from exc


class Transport:
    """A connected Unix socket to the daemon."""

    def __init__(self, path: Path, *, timeout: float) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with map_socket_errors(path):
                sock.settimeout(timeout)
                sock.connect(str(path))
                sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        return self._socket().fileno()

    def send(self, data: bytes) -> None:
        """Send all of ``data``; blocks while the daemon is not reading (only the sender thread waits)."""
        with map_socket_errors(self.path):
            self._socket().sendall(data)

    def receive_available(self) -> bytes | None:
        """Bytes that have arrived, without waiting: None if there are none, b"" if the daemon closed."""
        with map_socket_errors(self.path):
            try:
                return self._socket().recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None

    def receive(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` seconds for bytes; b"" if the daemon closed."""
        sock = self._socket()
        with map_socket_errors(self.path):
            sock.settimeout(timeout)
            try:
                return sock.recv(RECV_SIZE)
            finally:
                sock.settimeout(None)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def abandon(self) -> None:
        """Forget the socket in a forked child without touching the parent's connection."""
        if self._sock is not None:
            self._sock.detach()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise DaemonUnavailable(f"The connection to the trackd daemon at {self.path} is closed.")
        return self._sock
