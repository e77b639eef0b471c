"""A short-lived control connection to the daemon: what ``trackd daemon status`` uses."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import DaemonUnavailable
from ..protocol import NEED_DATA, ErrorCode, ErrorReply, GetStatus, StatusReply
from ._names import random_id
from ._transport import DaemonRefused, handshake, make_hello


def query_status(socket_path: Path, timeout: float = 5.0) -> dict[str, object]:
    """Ask the daemon on ``socket_path`` for its counters; raises DaemonUnavailable."""
    # An empty store root marks a control connection: it writes nothing.
    transport, protocol, _ = handshake(socket_path, make_hello(f"control-{random_id()}", ""), timeout=timeout)
    try:
        transport.send(protocol.send(GetStatus(request_id=1)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = protocol.next_event()
            if event is NEED_DATA:
                data = transport.receive(max(deadline - time.monotonic(), 0.01))
                if data is not None:
                    protocol.receive_data(data)
                continue
            if isinstance(event, StatusReply):
                return event.status
            if isinstance(event, ErrorReply) and event.code == ErrorCode.STORE_UNAVAILABLE:
                # Told to every connection when a disk refuses a write; the connection stays
                # (docs/protocol.md). Status on a full disk said "not running" for it.
                continue
            if isinstance(event, ErrorReply):
                raise DaemonRefused(event, socket_path)
            raise DaemonUnavailable(f"The trackd daemon closed the connection ({event!r}).")
        raise DaemonUnavailable(f"The trackd daemon at {socket_path} did not answer within {timeout:g} s.")
    finally:
        transport.close()
