"""The listening socket's streams: asyncio's, except that a connection lost to an error still yields
what its peer sent.

A reply written to a client that has just died fails (EPIPE, or ECONNRESET when it died with
replies unread), and the transport then closes the socket at once: the batches the client sent
before it died, still in the kernel's buffer and in the reader's, were lost, and the reader raised
the error instead of returning them. ``ClientConnection.send`` skips a peer it finds closed, but
the peer can die between that look and the write, and a reply queued while the client was alive
but not reading is written by the event loop whenever the socket takes it, after the client died
too. Here the socket is still open when ``connection_lost`` is called (asyncio and uvloop close it
once it returns): what it holds is read out into the reader, which then ends as at EOF.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import SupportsIndex

# What one read of the socket takes; the kernel's buffer of the socket bounds the total.
_READ_SIZE = 256 * 1024


class _ClientStream(asyncio.StreamReader):
    """A StreamReader that says whether its stream was ended (feed_eof), and takes nothing after."""

    ended = False

    def feed_eof(self) -> None:
        self.ended = True
        super().feed_eof()

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self.ended:
            # Shutdown ended a live client's reader (ClientConnection.stop_reading: pause_reading,
            # then feed_eof), but draining a reader its own flow control had paused resumes the
            # socket, and the client's next bytes came in after the end: asyncio's "feed_data after
            # feed_eof" assertion, a traceback in the daemon's log, and the connection torn down with
            # its replies unsent. They are left unread instead, as those still in the kernel's
            # buffer are: unacknowledged, the client resends them to the next daemon.
            return
        super().feed_data(data)


class _ClientStreamProtocol(asyncio.StreamReaderProtocol):
    def __init__(
        self, reader: _ClientStream, connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        super().__init__(reader, connected)
        self._reader = reader
        self._fd = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._reader.ended:
            # The peer sent nothing more (it is gone: the write failed for that), so this ends at
            # its end, or at the error a peer that died with replies unread leaves (ECONNRESET).
            while self._fd >= 0:
                try:
                    data = os.read(self._fd, _READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                self._reader.feed_data(data)
            # Not the error: the reader ends after what it holds, which its connection still handles
            # (its batches written, its will applied); the error would have discarded it.
            exc = None
        self._fd = -1
        super().connection_lost(exc)


async def start_unix_server(
    connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], path: str | None = None, *,
    sock: socket.socket | None = None, backlog: int,
) -> asyncio.Server:
    """asyncio.start_unix_server(connected, path, sock=sock, backlog=backlog), with the streams above."""
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(
        lambda: _ClientStreamProtocol(_ClientStream(), connected), path, sock=sock, backlog=backlog
    )
