"""The protocol state machine: which side may send which event, and when.

Everything that decides whether an event is legal lives here, in ``EVENT_TRIGGERED_TRANSITIONS``.
A ``Connection`` does no I/O: the client's sender thread and the daemon's connection task each
feed it bytes and write out the bytes it returns.
"""

from __future__ import annotations

import enum

from ..errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Ack,
    BadBatch,
    Batch,
    ConnectionClosed,
    CreateExperiment,
    Dropped,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    FlushDone,
    GetExperiment,
    GetStatus,
    Hello,
    OwnedRuns,
    Rejected,
    SpooledWill,
    StatusReply,
    Welcome,
)
from ._frames import FRAME_HEADER_SIZE, decode_body, decode_header, encode_frame, may_begin_hello
from ._limits import MAX_FRAME_SIZE


class Role(enum.Enum):
    """Which end of the socket a Connection is."""

    CLIENT = "client"
    DAEMON = "daemon"


class State(enum.Enum):
    """Where a connection is in its life."""

    AWAIT_HELLO = "AWAIT_HELLO"
    AWAIT_WELCOME = "AWAIT_WELCOME"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class NeedData:
    """The type of NEED_DATA: next_event() needs more bytes before it can return an event."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

_C, _D = Role.CLIENT, Role.DAEMON
# (state, role of the sender, event type) -> next state. A missing entry is a protocol violation.
EVENT_TRIGGERED_TRANSITIONS: dict[tuple[State, Role, type[Event]], State] = {
    (State.AWAIT_HELLO, _C, Hello): State.AWAIT_WELCOME,
    # The events a client may send before the Welcome: the runs it owns, and the batches of a
    # connection with nothing to resend, so that a process killed while its daemon has not
    # answered yet (stopped, busy) has told them and sent them into the socket (see "Before the
    # Welcome" in docs/protocol.md). A daemon answers a Hello before it reads on, so it gets
    # these in OPEN.
    (State.AWAIT_WELCOME, _C, OwnedRuns): State.AWAIT_WELCOME,
    (State.AWAIT_WELCOME, _C, Batch): State.AWAIT_WELCOME,
    (State.AWAIT_WELCOME, _D, Welcome): State.OPEN,
    (State.AWAIT_WELCOME, _D, ErrorReply): State.CLOSED,
    # The daemon explains why it is closing a connection that broke the protocol, naming the
    # batch or the request whose frame did it, when it can.
    (State.CLOSED, _D, ErrorReply): State.CLOSED,
    (State.CLOSED, _D, BadBatch): State.CLOSED,
    **{(State.OPEN, _C, cls): State.OPEN for cls in (Batch, Flush, CreateExperiment, GetExperiment, GetStatus, Dropped, OwnedRuns, SpooledWill)},
    **{(State.OPEN, _D, cls): State.OPEN for cls in (Ack, FlushDone, ExperimentReply, Rejected, StatusReply, ErrorReply, BadBatch)},
}


class Connection:
    """One end of a trackd connection: bytes in, events out; events in, bytes out."""

    def __init__(self, our_role: Role) -> None:
        self.our_role = our_role
        self.their_role = Role.DAEMON if our_role is Role.CLIENT else Role.CLIENT
        self.state = State.AWAIT_HELLO
        self._buffer = bytearray()
        self._eof = False
        self._closed_reported = False
        # Bytes of the frame that next_event() returned last (header included): what the daemon
        # charges a batch's backlog when that is more than its events' estimate (inline artifacts).
        self.last_frame_size = 0
        # The highest Batch.seq received on this connection (see _check_batch_order).
        self._last_batch_seq = 0

    def send(self, event: Event) -> bytes:
        """Return the bytes that carry ``event`` to the peer, after checking it is legal now."""
        self._transition(self.our_role, event)
        return encode_frame(event)

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed the connection."""
        if self._eof and data:
            raise LocalProtocolError("Cannot receive data after the peer closed the connection.")
        if data:
            self._buffer += data
        else:
            self._eof = True

    @property
    def buffered_bytes(self) -> int:
        """How many received bytes wait to be decoded (for the daemon's per-connection bound)."""
        return len(self._buffer)

    def next_event(self) -> Event | NeedData:
        """Return the next complete event from the peer, or NEED_DATA.

        Raises RemoteProtocolError when the peer's bytes break the protocol; the connection is
        CLOSED afterwards and should be dropped.
        """
        try:
            event = self._next_frame()
            if isinstance(event, Event) and not isinstance(event, ConnectionClosed):
                self._transition(self.their_role, event)
                if isinstance(event, Batch):
                    self._check_batch_order(event)
            return event
        except LocalProtocolError as exc:
            self.state = State.CLOSED
            raise exc._reraise_as_remote_protocol_error() from exc

    @property
    def closed_mid_frame(self) -> bool:
        """Whether the peer closed its side with part of a frame sent: it died or gave up while
        sending, which is not garbage on the wire."""
        return self._eof and bool(self._buffer)

    @property
    def closed_mid_hello(self) -> bool:
        """Whether the peer closed its side partway through its first frame, and what arrived of
        it can begin a Hello: a client killed, or giving up, as it connected, not garbage."""
        return self.closed_mid_frame and not self.last_frame_size and may_begin_hello(self._buffer)

    def _next_frame(self) -> Event | NeedData:
        buffer = self._buffer
        if len(buffer) >= FRAME_HEADER_SIZE:
            size = decode_header(buffer[:FRAME_HEADER_SIZE])
            end = FRAME_HEADER_SIZE + size
            if len(buffer) >= end:
                body = bytes(buffer[FRAME_HEADER_SIZE:end])
                del buffer[:end]
                self.last_frame_size = end
                return decode_body(body)
        if self._eof:
            if buffer:
                raise LocalProtocolError(
                    f"The peer closed the connection in the middle of a frame ({len(buffer)} bytes of it arrived)."
                )
            if not self._closed_reported:
                self._closed_reported = True
                self.state = State.CLOSED
                return ConnectionClosed()
            raise LocalProtocolError("next_event() called again after ConnectionClosed.")
        return NEED_DATA

    def _check_batch_order(self, batch: Batch) -> None:
        """A client's batches on one connection go in ``seq`` order, each above the last.

        The daemon takes a batch numbered at or below one it holds of the client as a resend
        after a reconnect (the same batch), skips it and acknowledges it with the one it holds.
        On one connection no trackd client sends one (its resends go in the order of their
        numbers), and such a batch was acknowledged without ever being written. Checked on
        receiving only: a client sends the frames of the batches it resends as it kept them.
        """
        if batch.seq <= self._last_batch_seq:
            # Not numbered as the Batch's own error (batch_seq): the batch is not malformed, and a
            # client told so would drop it as never to be written.
            raise LocalProtocolError(
                f"Batch.seq {batch.seq} arrived after batch {self._last_batch_seq} on this connection; expected "
                f"a seq above {self._last_batch_seq}: a client sends its batches in the order of their numbers "
                "(a resend after a reconnect goes on a new connection)."
            )
        self._last_batch_seq = batch.seq

    def _transition(self, sender: Role, event: Event) -> None:
        try:
            self.state = EVENT_TRIGGERED_TRANSITIONS[(self.state, sender, type(event))]
        except KeyError:
            verb = "send" if sender is self.our_role else "receive"
            raise LocalProtocolError(
                f"can't {verb} {type(event).__name__} as {sender.value} in state {self.state.name}"
            ) from None


__all__ = ["MAX_FRAME_SIZE", "NEED_DATA", "Connection", "NeedData", "Role", "State"]
