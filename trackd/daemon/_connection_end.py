"""The peer's end of a client connection, a base of ``ClientConnection``: whether the peer is
done sending, closed its socket or exited; a shutdown reading its connection to the end; and the
replies that a client done sending still waits for before the connection is closed.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from .._peer import peer_closed, peer_done_sending
from ._wills import Will, exited

if TYPE_CHECKING:
    from ..protocol import Connection
    from ._server import Server
    from ._state import Session

# How often a connection that waits to answer a client done sending (answer_before_closing) looks
# whether that client went away altogether: a reply sent wakes it sooner.
PEER_RECHECK = 1.0


def _nothing_unread(fd: int) -> bool:
    """Whether the kernel holds no unread byte for the socket ``fd`` (FIONREAD)."""
    unread = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, unread)
    return unread[0] == 0


class ConnectionEnd:
    """The peer's end of a ``ClientConnection`` (its base): whether it is gone, and what it still waits for."""

    server: Server
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: Connection
    session: Session | None
    will: Will | None
    peer: str
    drained: bool
    _read_to_end: bool
    # Set whenever a reply is sent (and at shutdown): answer_before_closing looks again then.
    _replied: asyncio.Event

    async def answer_before_closing(self) -> None:
        """The client shut its sending side down: keep ours open until what it sent is answered.

        A client may send its last batches and a Flush, shut down its sending side and read its
        replies to the end of the stream: closed as its stream ended, the connection gave it no
        Ack and no FlushDone. It waits until its batches are written and its barriers answered,
        its process exits or closes the socket, another connection of it takes its session, or
        the daemon stops (whose shutdown answers it, see stop_reading).
        """
        while self._owes_replies() and not self.server.stopping and not self._peer_exited():
            self._replied.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._replied.wait(), PEER_RECHECK)

    def _owes_replies(self) -> bool:
        """Whether this connection's client waits for an Ack or a FlushDone that would come on it."""
        session = self.session
        return session is not None and session.connection is self and (
            session.received_seq > session.applied_seq or bool(session.flushes)
        )

    def stop_reading(self) -> bool:
        """Shutdown: read nothing more; what is already buffered is handled, then the peer looks closed.

        Unless the peer's process has exited (or closed its end): then the connection is read to its
        end, bounded by the shutdown timeout, and True is returned. A live client resends what was
        not read to the next daemon; a dead one cannot, and the kernel still held what it sent last
        (it was lost, and its will was never applied: its runs stayed RUNNING for ever). A live one
        that only shut down its sending side is read to its end too, but not closed there: it waits
        for its acks (it was closed before phase 3, as if it had exited, and got no reply).
        """
        self._replied.set()  # one waiting in answer_before_closing looks again: the shutdown answers it now
        if self._peer_gone():
            self._read_to_end = True
            return True
        transport = cast(asyncio.Transport, self.writer.transport)
        if not transport.is_closing():
            transport.pause_reading()
        self.reader.feed_eof()
        return False

    def _peer_gone(self) -> bool:
        return self._peer_fd(peer_done_sending) or self._peer_exited()

    def _peer_exited(self) -> bool:
        """Whether the peer's process is gone (or it closed the socket altogether): not only done sending."""
        return self._peer_fd(peer_closed) or (self.will is not None and exited(self.will))

    def _given_up_unanswered(self) -> bool:
        """Whether the peer closed its socket after its Hello and nothing more: no byte after the
        Hello decoded, buffered (a read takes all the reader holds, up to READ_SIZE) or in the kernel."""
        return self.protocol.buffered_bytes == 0 and self._peer_fd(peer_closed) and self._peer_fd(_nothing_unread)

    def _peer_fd(self, test: Callable[[int], bool]) -> bool:
        """``test`` applied to the socket's descriptor; False once it is closed."""
        sock = self.writer.get_extra_info("socket")
        try:
            return sock is not None and test(sock.fileno())
        except (OSError, ValueError):
            return False
