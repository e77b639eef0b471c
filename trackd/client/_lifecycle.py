"""A client's lifecycle state, and what interpreter exit does to the clients still open.

This module is loaded by ``import trackd``; ``_client.py`` (the Client, its sender and everything
they import) loads only when the first Client is made. The exit hook is registered here, at
import, so it keeps its place among the program's own atexit hooks wherever the first Client is
made, and it needs no import at exit: a process that never made a Client has nothing to close.
"""

from __future__ import annotations

import atexit
import enum
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import Client


class ClientState(enum.Enum):
    """A client's lifecycle (as httpx's ClientState)."""

    OPEN = 1
    CLOSED = 2


# Every Client that may still hold undelivered events; Client.__init__ adds itself.
LIVE_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()

# Called with the run status before clients close at exit or on SIGTERM (the fluent API ends its runs).
EXIT_HOOKS: list[Callable[[str | None], None]] = []


def close_all_clients() -> None:
    """At interpreter exit, deliver what every open client accepted (bounded by TRACKD_EXIT_TIMEOUT)."""
    for client in list(LIVE_CLIENTS):
        client.close()


atexit.register(close_all_clients)
