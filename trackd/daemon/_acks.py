"""What a finished write tells its clients, and the counters ``trackd daemon status`` shows of it.

Each failure goes out as ``Rejected`` first, then each session in the write gets one ``Ack`` of
its highest written batch, and each flush barrier that batch reaches its ``FlushDone``: in that
order, so a client's flush() has every rejection before it returns. Runs on the event loop, after
the writer thread's ``Applier.apply``.

A Rejected names one item, and a client that never read its replies had one queued per refused
item: batches of 50,000 params for a missing run took the daemon to ~500 MB of replies. So the
first MAX_NAMED_REJECTIONS of a batch are named, and none while the client leaves more than
MAX_UNREAD_REPLY_BYTES unread; one more Rejected (``Rejected.rest``) per client and write counts
the rest, so the client still counts every refused item and event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..protocol import MAX_TEXT_LENGTH, Ack, FlushDone, Rejected
from ._applier import ApplyResult, Failure
from ._batcher import PendingBatch
from ._connection import MAX_UNREAD_REPLY_BYTES
from ._state import ServerState, Session

logger = logging.getLogger("trackd.daemon")

# Refused items of a client that disconnected named in the log, per client (the rest: status).
GONE_REFUSALS_LOGGED = 10
# Refused items of one batch named each in a Rejected; the rest are counted in one (see above).
# As many as a client's flush() names (client/_refusals.MAX_NAMED_ITEMS).
MAX_NAMED_REJECTIONS = 100


@dataclass(slots=True)
class _Unnamed:
    """A client's refused items of one write not named one by one: counted in one Rejected."""

    first: Failure
    last_seq: int
    items: int = 0
    events: int = 0

    def add(self, failure: Failure) -> None:
        self.last_seq = max(self.last_seq, failure.seq)
        self.items += 1
        self.events += failure.events

    def rejected(self) -> Rejected:
        first = self.first
        said = (
            f"not named one by one: the daemon names at most {MAX_NAMED_REJECTIONS} refused items of a batch, and "
            f"none while its client leaves more than {MAX_UNREAD_REPLY_BYTES // 1024} KiB of its replies unread; "
            f"the first of them: {first.item}: "
        )
        message = said + first.message[: MAX_TEXT_LENGTH - len(said)]
        return Rejected.rest(first_seq=first.seq, seq=self.last_seq, items=self.items, events=self.events, message=message)


def deliver(state: ServerState, pending: list[PendingBatch], result: ApplyResult) -> None:
    """Count the write of ``pending`` (``result``: what it did) and answer its clients."""
    counters = state.counters
    counters.writes += 1
    counters.records_written += result.records - sum(failure.events for failure in result.failures)
    counters.metric_points_written += result.metric_points
    counters.items_rejected += len(result.failures)
    counters.events_rejected += sum(failure.events for failure in result.failures)
    for message in result.store_errors:
        counters.write_errors += 1
        if state.count_error(message.split(":")[0]):
            logger.error("%s", message)  # once per kind, and once for all past MAX_ERROR_KINDS
    for root, message in result.refused.items():  # logged by Outages.refuse, once per store and kind
        counters.write_errors += 1
        state.count_error(message.split(":")[0], store=root)
    # Rejections go out before the Ack and FlushDone they belong to, so flush() sees them.
    named: dict[tuple[Session, int], int] = {}
    unnamed: dict[Session, _Unnamed] = {}
    for failure in result.failures:
        first = failure.session.rejected == 0
        failure.session.rejected += failure.events
        if failure.session.connection is not None:
            if first:
                # The client's flush() names every refused item; status only counts them, so the
                # log says which was first (once per client: a loop may log the same refused item
                # at every step).
                logger.warning(
                    "%s: the store refused %s (its later refusals are counted in status, not logged): %s",
                    failure.session.connection.peer, failure.item, failure.message,
                )
            key = (failure.session, failure.seq)
            named[key] = named.get(key, 0) + 1
            if named[key] <= MAX_NAMED_REJECTIONS and not failure.session.connection.replies_unread():
                failure.session.connection.send(
                    Rejected(seq=failure.seq, item=failure.item, message=failure.message, events=failure.events)
                )
            else:
                unnamed.setdefault(failure.session, _Unnamed(failure, failure.seq)).add(failure)
        else:
            # The log is all that names an item refused after its client left, but one line per
            # item flooded it: 50,000 records for a missing run logged 50,000 lines and rotated the
            # daemon's start out of the log. The first few are named; the rest are counted in status.
            session = failure.session
            session.gone_refusals_logged += 1
            if session.gone_refusals_logged <= GONE_REFUSALS_LOGGED:
                more = (
                    "; its later refusals are counted in status, not logged"
                    if session.gone_refusals_logged == GONE_REFUSALS_LOGGED else ""
                )
                logger.warning("%s: %s (client gone, could not be told%s)", failure.item, failure.message, more)
    for session, rest in unnamed.items():
        if session.connection is not None:
            session.connection.send(rest.rejected())
    sessions: dict[str, Session] = {}
    for item in pending:
        session = item.session
        session.applied_seq = max(session.applied_seq, item.seq)
        session.backlog_events -= item.events  # written or refused: either way no longer waiting
        sessions[session.client_id] = session
    for session in sessions.values():
        conn = session.connection
        if conn is None:
            continue
        conn.send(Ack(seq=session.applied_seq))
        still_waiting = []
        for request_id, target in session.flushes:
            if target <= session.applied_seq:
                conn.send(FlushDone(request_id=request_id, acked_seq=session.applied_seq))
            else:
                still_waiting.append((request_id, target))
        session.flushes = still_waiting
