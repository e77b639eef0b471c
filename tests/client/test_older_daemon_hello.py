"""A daemon of an older protocol, left running by an upgrade, and a client with a longer Hello.

A daemon of protocol 6 counted a Hello's fields before it read their version, so it refused
every client of protocol 7 with "A Hello frame has 6 fields; expected 5": the client took that
for a passing refusal (its exit waited for it) and said nothing of restarting the daemon. The
client now reads that refusal as the version mismatch it stands for, and a daemon reads a newer
client's Hello far enough to answer with the version mismatch itself.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from helpers import short_socket_path

from trackd.client._transport import handshake, make_hello
from trackd.errors import DaemonUnavailable
from trackd.protocol import EVENT_TYPES, PROTOCOL_VERSION, ErrorCode, ErrorReply, Hello, decode_body, encode_frame

HELLO_CODE = next(code for code, kind in EVENT_TYPES.items() if kind is Hello)

# What a daemon of protocol 6 answered a protocol-7 client's Hello (its exact words).
OLD_REFUSAL = (
    "A Hello frame has 6 fields; expected 5 (protocol_version, client_id, pid, host, store_root)."
)


@pytest.fixture
def protocol_6_daemon() -> Iterator[Path]:
    """A real socket whose peer answers the first frame as a protocol-6 daemon answered it."""
    path = short_socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the Hello, unread as that daemon could not read it
            conn.sendall(encode_frame(ErrorReply(request_id=0, code=ErrorCode.BAD_FRAME, message=OLD_REFUSAL)))
            conn.recv(1)  # until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield path
    listener.close()
    server.join(5)
    path.unlink()
    path.parent.rmdir()


def test_an_older_daemons_refusal_of_the_hello_reads_as_a_version_mismatch(protocol_6_daemon: Path) -> None:
    hello = make_hello("c" * 32, "/tmp/store", "/tmp/store")
    with pytest.raises(DaemonUnavailable) as raised:
        handshake(protocol_6_daemon, hello, timeout=5.0)
    refused = raised.value
    assert getattr(refused, "lasting", False)  # nothing to wait for at exit: the daemon must be restarted
    message = str(refused)
    assert "runs an older trackd" in message and f"protocol version {PROTOCOL_VERSION}" in message, message
    assert "trackd daemon stop" in message and OLD_REFUSAL.rstrip(".") in message, message


def test_a_newer_clients_longer_hello_is_read_as_far_as_its_version() -> None:
    fields = (PROTOCOL_VERSION + 1, "c" * 32, 123, "host", "/tmp/store", "/tmp/store", "a field of a later version")
    event = decode_body(msgpack.packb((HELLO_CODE, *fields)))
    assert isinstance(event, Hello) and event.protocol_version == PROTOCOL_VERSION + 1
    # This version's own Hello with a field too many is still malformed.
    with pytest.raises(Exception, match="Hello frame has 7 fields"):
        decode_body(msgpack.packb((HELLO_CODE, PROTOCOL_VERSION, *fields[1:])))
