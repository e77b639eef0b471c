"""A short-lived control connection to the daemon: what ``trackd daemon status`` uses."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from ..errors import DaemonUnavailable
from ..protocol import NEED_DATA, PROTOCOL_VERSION, Connection, ErrorReply, GetStatus, Hello, Role, StatusReply, Welcome
from ._transport import Transport


def query_status(socket_path: Path, timeout: float = 5.0) -> dict[str, object]:
    """Ask the daemon on ``socket_path`` for its counters; raises DaemonUnavailable."""
    transport = Transport(socket_path, timeout=timeout)
    protocol = Connection(Role.CLIENT)
    try:
        # An empty store root marks a control connection: it writes nothing.
        transport.send(protocol.send(Hello(
            protocol_version=PROTOCOL_VERSION, client_id=f"control-{uuid.uuid4().hex}", pid=os.getpid(),
            host=socket.gethostname(), store_root="",
        )))
        deadline = time.monotonic() + timeout
        asked = False
        while time.monotonic() < deadline:
            event = protocol.next_event()
            if event is NEED_DATA:
                data = transport.receive(max(deadline - time.monotonic(), 0.01))
                protocol.receive_data(data)
                continue
            if isinstance(event, Welcome) and not asked:
                transport.send(protocol.send(GetStatus(request_id=1)))
                asked = True
            elif isinstance(event, StatusReply):
                return event.status
            elif isinstance(event, ErrorReply):
                raise DaemonUnavailable(f"The trackd daemon refused the status request: {event.message}")
            else:
                raise DaemonUnavailable(f"The trackd daemon closed the connection ({event!r}).")
        raise DaemonUnavailable(f"The trackd daemon at {socket_path} did not answer within {timeout:g} s.")
    finally:
        transport.close()
