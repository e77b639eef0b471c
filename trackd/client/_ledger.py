"""The sender's ledger: what went to the daemon and is not settled yet, and what the replies said.

Every batch is numbered and kept, frame and all, until the daemon acknowledges it as written, so a
lost connection costs nothing: the batches go again and the daemon skips the ones it holds. Every
request waits here for its reply, and what the daemon refused is kept for the next flush() to
report (``Refusals``: bounded, however long no flush() takes it). The daemon's replies settle these
entries (``ack``, ``settle``); the sender moves bytes.

Plain bookkeeping with no I/O and no lock of its own: the sender calls it holding its lock, from
the sender thread and from the callers' flush() and request().
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

from .._words import counted
from ..errors import DeliveryError, LocalProtocolError, TrackdError
from ..protocol import (
    FRAME_HEADER_SIZE, BadBatch, ErrorCode, ErrorReply, Event, ExperimentReply, FlushDone, Rejected, StatusReply,
    decode_body,
)
from ._outbox import Request, events, warn
from ._refusals import Refusals


# The process that has said, in one line, that the daemon refused one of its items (0: none yet).
_warned_rejected_pid = 0


class Ledger:
    """Numbered batches awaiting their ack, requests awaiting their reply, and refusals since the last flush."""

    __slots__ = (
        "_next_request_id", "_refusals", "_warned_codes", "acked_seq", "in_flight", "outgoing", "rejected", "seq", "unacked",
        "unacked_bytes", "unacked_events", "unsent", "unsent_bytes", "unsent_events",
    )

    def __init__(self) -> None:
        self.seq = 0  # the number of the last batch sent or spooled
        self.acked_seq = 0
        self.unacked: collections.deque[tuple[int, bytes, int]] = collections.deque()  # (seq, frame, records)
        self.unacked_bytes = 0
        self.unacked_events = 0  # records in those batches (a metric series counts its points)
        # The last ``unsent`` of them are not sent on this connection yet (see ``resend_all``), and
        # hold these records and bytes: the window counts only the others.
        self.unsent = 0
        self.unsent_events = 0
        self.unsent_bytes = 0
        self.outgoing: collections.deque[Request] = collections.deque()  # not sent yet
        self.in_flight: dict[int, Request] = {}  # sent, or a flush barrier behind its batches
        self.rejected = 0
        self._refusals = Refusals()
        self._next_request_id = 0
        self._warned_codes: set[str] = set()

    # -- requests ----------------------------------------------------------------------------------

    def new_request(self, build: Callable[[int], Event]) -> Request:
        """A request with the next request id; ``build(request_id)`` makes its event."""
        self._next_request_id += 1
        return Request(self._next_request_id, build)

    def queue(self, req: Request) -> None:
        """Queue ``req`` for the sender thread to send."""
        self.outgoing.append(req)

    def next_outgoing(self) -> Request:
        """Take the oldest request not sent yet; it waits in flight for its reply from now on."""
        req = self.outgoing.popleft()
        self.in_flight[req.request_id] = req
        return req

    def expect_reply(self, req: Request) -> None:
        """Keep a flush barrier in flight: it travelled in the buffer, behind its records, not in ``outgoing``."""
        req.barrier = True
        self.in_flight[req.request_id] = req

    def requeue_sent(self) -> None:
        """A new connection: the requests sent to the lost daemon, flush barriers aside, go again
        first (``outgoing``), before the batches resent; the barriers go after them (``barriers``).

        An experiment request depends on no batch (the daemon answers it without waiting for the
        batches received before it), so it need not wait for a spool file's resend: a
        set_experiment behind a resend of hundreds of MB timed out, the daemon healthy.
        """
        sent = sorted((req for req in self.in_flight.values() if not req.barrier), key=lambda req: req.request_id)
        for req in sent:
            del self.in_flight[req.request_id]
        self.outgoing.extendleft(reversed(sent))

    def barriers(self) -> list[Request]:
        """The flush barriers in flight, oldest first (sent again after every batch is)."""
        return sorted((req for req in self.in_flight.values() if req.barrier), key=lambda req: req.request_id)

    def fail(self, req: Request, error: TrackdError) -> None:
        """Complete ``req``, in flight, with ``error`` (it could not be sent: see SenderThread._send_request)."""
        self._complete(req.request_id, error=error)

    def fail_requests(self, barriers: list[Request], error: TrackdError) -> None:
        """Complete the given flush barriers and every request sent or waiting to be sent with ``error``."""
        requests = barriers + list(self.in_flight.values()) + list(self.outgoing)
        self.in_flight.clear()
        self.outgoing.clear()
        for req in requests:
            req.error = error
            req.done = True

    # -- batches -----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Number a batch that goes to the spool instead of the socket."""
        self.seq += 1
        return self.seq

    def sent(self, seq: int, frame: bytes, records: int) -> None:
        """Keep batch ``seq`` (``records`` records, encoded as ``frame``) until the daemon acknowledges it.

        Sent on this connection: after every batch kept before it was resent (``next_unsent``).
        """
        assert not self.unsent, "a new batch would overtake the unacknowledged ones still to be resent"
        self.seq = seq
        self.unacked.append((seq, frame, records))
        self.unacked_bytes += len(frame)
        self.unacked_events += records

    def ack(self, seq: int) -> None:
        """Drop batches up to ``seq`` from the resend queue: the daemon has written them."""
        self.acked_seq = max(self.acked_seq, seq)
        while self.unacked and self.unacked[0][0] <= seq:
            _, frame, records = self.unacked[0]
            self._forget(0, frame, records)  # perhaps before it was resent: the daemon wrote it before the break
            self.unacked.popleft()

    def resend_all(self) -> None:
        """A new connection: every batch kept is to be sent again (``next_unsent``), and none counts
        in the window until it is."""
        self.unsent, self.unsent_events, self.unsent_bytes = len(self.unacked), self.unacked_events, self.unacked_bytes

    def next_unsent(self) -> bytes | None:
        """The frame of the oldest batch kept but not sent on this connection yet, counted in the
        window from now on; None once every one is sent."""
        if not self.unsent:
            return None
        _, frame, records = self.unacked[len(self.unacked) - self.unsent]
        self._leave_unsent(frame, records)
        return frame

    def window(self) -> tuple[int, int]:
        """Records and bytes of the batches sent on this connection and not acknowledged yet."""
        return self.unacked_events - self.unsent_events, self.unacked_bytes - self.unsent_bytes

    def _leave_unsent(self, frame: bytes, records: int) -> None:
        """A batch still to be resent leaves that count (sent, acknowledged first, or refused)."""
        self.unsent -= 1
        self.unsent_events -= records
        self.unsent_bytes -= len(frame)

    def take_unacked(self) -> list[tuple[int, bytes, int]]:
        """Remove and return every unacknowledged batch, oldest first (they go to the spool)."""
        batches = list(self.unacked)
        self.unacked.clear()
        self.unacked_bytes = 0
        self.unacked_events = 0
        self.unsent = self.unsent_events = self.unsent_bytes = 0
        return batches

    def restore_unacked(self, batches: list[tuple[int, bytes, int]]) -> None:
        """Put back batches that ``take_unacked`` returned, ahead of any sent since."""
        self.unacked.extendleft(reversed(batches))
        self.unacked_bytes += sum(len(frame) for _, frame, _ in batches)
        self.unacked_events += sum(records for _, _, records in batches)

    def settled(self) -> bool:
        """Nothing waits for the daemon: every batch acknowledged, every sent request answered."""
        return not self.in_flight and not self.unacked

    # -- what the daemon refused and replied -------------------------------------------------------

    def refuse(self, records: int, reason: str) -> None:
        """Count ``records`` the daemon will never write, for the next flush() to report."""
        self.rejected += records
        self._refusals.add(records, reason)

    def take_refusals(self) -> Refusals:
        """What was refused since the last call (with the item the warning on stderr named as it
        was refused, if that is among them)."""
        refusals, self._refusals = self._refusals, Refusals()
        return refusals

    def settle(self, event: Event) -> None:
        """Apply one reply from the daemon other than an Ack (``ack`` takes those)."""
        if isinstance(event, Rejected):
            self.rejected += event.events
            named = self._refusals.add_item(event.item, event.message, event.events, items=event.items)
            global _warned_rejected_pid
            if _warned_rejected_pid != os.getpid():
                # A store refusing items (its permissions, a key clashing with a folder) was heard of
                # only at the next flush() or at exit: a training job learnt it hours later. Once a
                # process (a forked child warns for itself), whichever of its clients it was.
                _warned_rejected_pid = os.getpid()
                self._refusals.warned = named  # exit's line does not name it again
                # A metric's item already counts its points ("metric 'x' of run R (10 points)"):
                # "(10 points) (10 events)" said it twice.
                counted_already = event.item.endswith(f" ({event.events} points)")
                said = event.item if counted_already else f"{event.item} ({events(event.events)})"
                warn(
                    f"the daemon refused {said}: {event.message.rstrip('.')}. Later refusals "
                    "are not warned of one by one: flush() raises DeliveryError naming them, and exit counts any it did not."
                )
        elif isinstance(event, (FlushDone, ExperimentReply, StatusReply)):
            self._complete(event.request_id, result=event)
        elif isinstance(event, ErrorReply):
            if event.request_id:
                self._complete(event.request_id, error=DeliveryError(event.message))
                return
            if event.code == ErrorCode.BAD_FRAME:
                self.drop_malformed()
            if event.code != ErrorCode.SHUTTING_DOWN and event.code not in self._warned_codes:
                self._warned_codes.add(event.code)
                warn(f"the daemon reports: {event.message}")

    def drop_refused(self, event: BadBatch, *, spooled: Callable[[int], int]) -> None:
        """Refuse, whole, the batch the daemon named as one it will never write (``BadBatch``).

        Kept here, or else in the spool file and sent again from it: ``spooled(seq)`` skips it
        there from now on and returns its records (0: the file does not hold it either).
        """
        seq = event.seq
        for index, (kept_seq, frame, records) in enumerate(self.unacked):
            if kept_seq == seq:
                self._forget(index, frame, records)
                del self.unacked[index]
                break
        else:
            records = spooled(seq)
        if records:
            self.refuse(records, refused_message(seq, records, event.message))

    def drop_malformed(self) -> None:
        """Refuse, whole, the unacknowledged batches this client's own checks find malformed (``bad_frame``).

        The daemon names the batch it refuses (``BadBatch``, see ``drop_refused``) when the frame
        says which it is; this finds one it could not name, by decoding the kept frames as the
        daemon does: a batch this client built wrong (a check the call site lacked), which
        otherwise went again on every connection, for ever. The rest go on, and the daemon takes
        the gap in sequence numbers.
        """
        kept: collections.deque[tuple[int, bytes, int]] = collections.deque()
        first_unsent = len(self.unacked) - self.unsent
        for index, (seq, frame, records) in enumerate(self.unacked):
            try:
                decode_body(frame[FRAME_HEADER_SIZE:])
            except LocalProtocolError as exc:
                self._forget(index, frame, records, first_unsent)
                self.refuse(records, refused_message(seq, records, str(exc)))
            else:
                kept.append((seq, frame, records))
        self.unacked = kept

    def _forget(self, index: int, frame: bytes, records: int, first_unsent: int | None = None) -> None:
        """Take the ``index``-th kept batch out of the counts (the caller removes it from ``unacked``);
        ``first_unsent``: the index of the first batch still to be resent, if not as ``unacked`` is now."""
        self.unacked_bytes -= len(frame)
        self.unacked_events -= records
        if index >= (len(self.unacked) - self.unsent if first_unsent is None else first_unsent):
            self._leave_unsent(frame, records)

    def _complete(self, request_id: int, *, result: Event | None = None, error: TrackdError | None = None) -> None:
        req = self.in_flight.pop(request_id, None)
        if req is not None:
            req.result, req.error, req.done = result, error, True


def refused_message(seq: int, records: int, message: str) -> str:
    """The sentence flush() reports for batch ``seq`` refused whole by the daemon, quoting it."""
    return f"batch {seq} ({counted(records, 'event')}) was refused whole by the daemon as malformed: {message}"
