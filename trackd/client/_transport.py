"""The client's socket adapter: connect, handshake, send bytes, read available bytes."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import DaemonUnavailable
from ..protocol import NEED_DATA, PROTOCOL_VERSION, Connection, ErrorReply, Hello, Role, Welcome

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

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise DaemonUnavailable(f"The connection to the trackd daemon at {self.path} is closed.")
        return self._sock


def handshake(path: Path, hello: Hello, *, timeout: float) -> tuple[Transport, Connection, Welcome]:
    """Connect, send ``hello`` and wait for the daemon's Welcome; raises DaemonUnavailable."""
    transport = Transport(path, timeout=min(timeout, 1.0))
    protocol = Connection(Role.CLIENT)
    try:
        transport.send(protocol.send(hello))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = protocol.next_event()
            if event is NEED_DATA:
                protocol.receive_data(transport.receive(max(deadline - time.monotonic(), 0.01)))
                continue
            if isinstance(event, Welcome):
                return transport, protocol, event
            if isinstance(event, ErrorReply):
                raise DaemonUnavailable(f"The trackd daemon refused this client: {event.message}")
            raise DaemonUnavailable(f"The trackd daemon closed the connection during the handshake ({event!r}).")
        raise DaemonUnavailable(f"The trackd daemon at {path} did not answer the handshake within {timeout:g} s.")
    except BaseException:
        transport.close()
        raise


def make_hello(client_id: str, store_root: str) -> Hello:
    """The Hello this process sends: protocol version, who it is, which store it writes."""
    return Hello(
        protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=os.getpid(),
        host=socket.gethostname(), store_root=store_root,
    )
