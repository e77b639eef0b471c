"""The batcher: holds received batches and decides when they are written.

Writes happen by count, by bytes or by age, whichever comes first, so a busy client gets large
efficient writes and a quiet one still reaches the store within ``max_age`` seconds. Once
``eager_records`` events wait, a burst is under way and the write starts as soon as the writer is
free: what arrives during one write is the next one (group commit), instead of idling out the age. Time is passed
in as ``now``, so tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Container

    from ..protocol import Record
    from ..store import ArtifactCopy
    from ._state import Session

# The most events one write takes (a client's batch is never split). What a write costs is mostly
# per file (a write() and an lseek() each, ~4.5 us here with the Python around them) when points
# spread over many files, and per point otherwise (~0.3 us), so a larger write puts more points
# behind each file's syscalls:
# round-robin over 10,000 files, 65,536 gave ~2x the points/s of 16,384 (2026-11-26). A flushing
# neighbour does not wait for all of it: it is served between turns of a write (WRITE_TURN_RECORDS).
DEFAULT_MAX_RECORDS = 65_536
DEFAULT_MAX_BYTES = 40 * 1024 * 1024
# The bound: a point waits at most 50 ms in the daemon before its write starts.
DEFAULT_MAX_AGE = 0.05
# Past this many waiting events the write starts at once. Trickling clients still share a write
# every max_age (a few writes a second, not one per frame); a burst no longer waits out the age
# with the writer idle: a 100,000-point burst of log_metrics, 930k -> 1.10M durable points/s and
# its flush's tail 55 -> 34 ms (medians of 10, 2026-11-26).
DEFAULT_EAGER_RECORDS = 4_096
# What a waiting batch holds in the daemon's memory once decoded, which the backlog bound and the
# byte threshold count: its frame's bytes times DECODED_SIZE_FACTOR (msgpack's objects took 4.6x
# a frame of plain metric records and 5.3x one of series, 305 and 112 bytes an event, 2026-11-26;
# an inline artifact's bytes take about their size, so it is overcounted, which errs safe), and at
# least RECORD_SIZE_ESTIMATE bytes an event.
DECODED_SIZE_FACTOR = 5
RECORD_SIZE_ESTIMATE = 112
# While other clients are connected and flushes have come lately (Server._flushes_likely), a write
# goes to the store in turns of about this many records (whole client batches), and a flush barrier
# arriving meanwhile ends it after the turn under way: a flushing neighbour then waits for ~4,096
# events (a few ms) instead of up to DEFAULT_MAX_RECORDS.
WRITE_TURN_RECORDS = 4_096


@dataclass(slots=True)
class PendingBatch:
    """One client batch waiting to be written."""

    session: Session
    seq: int
    records: list[Record]
    # Events the records hold (a metric series counts its points): what writes are sized by.
    events: int
    # What it counts against the backlog bounds (bytes, estimated), taken off again exactly.
    size: int
    # Its artifacts sent by path, by id() of their record, once the daemon started copying them
    # (daemon/_copies.py); None before.
    copies: dict[int, ArtifactCopy] | None = None


@dataclass(slots=True)
class Batcher:
    """Collects pending batches and says when to write them."""

    max_records: int = DEFAULT_MAX_RECORDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: float = DEFAULT_MAX_AGE
    eager_records: int = DEFAULT_EAGER_RECORDS
    pending_records: int = 0
    pending_bytes: int = 0
    _items: list[PendingBatch] = field(default_factory=list)
    _oldest: float = 0.0
    _forced: bool = False

    def add(self, batch: PendingBatch, now: float) -> bool:
        """Queue ``batch``; return True if a write is now due."""
        if not self._items:
            self._oldest = now
        self._items.append(batch)
        self.pending_records += batch.events
        self.pending_bytes += batch.size
        return self._due()

    def request_write(self) -> None:
        """Make the next write due at once (a flush barrier or shutdown is waiting)."""
        self._forced = True

    def delay(self, now: float) -> float | None:
        """Seconds until a write is due: 0 if due now, None if nothing is pending."""
        if not self._items:
            return None
        if self._forced or self._due():
            return 0.0
        return max(0.0, self.max_age - (now - self._oldest))

    def _due(self) -> bool:
        records = self.pending_records
        return records >= self.max_records or records >= self.eager_records or self.pending_bytes >= self.max_bytes

    def requeue(self, batches: list[PendingBatch], now: float) -> None:
        """Put batches whose write failed back in front, to be written again first."""
        if not batches:
            return
        self._items[0:0] = batches
        self._oldest = now
        self.pending_records += sum(b.events for b in batches)
        self.pending_bytes += sum(b.size for b in batches)

    def requeue_in_order(self, batches: list[PendingBatch], now: float) -> None:
        """Put one client's batches back in front, but behind that client's earlier batches waiting here.

        Those were put back before (a copy finished earlier) and must still be written first.
        """
        if not batches:
            return
        session, seq = batches[0].session, batches[0].seq
        index = 0
        for position, item in enumerate(self._items):
            if item.session is session and item.seq < seq:
                index = position + 1
        self._items[index:index] = batches
        self._oldest = now
        self.pending_records += sum(b.events for b in batches)
        self.pending_bytes += sum(b.size for b in batches)

    def take(self, now: float, held: Container[str] = ()) -> list[PendingBatch]:
        """Hand the next write's batches to the writer: at most about ``max_records`` records.

        Batches of clients waiting on a flush go first, in a write of their own, so a client that
        floods the daemon makes a neighbour's flush wait for the write already under way at most,
        neither for the whole flood nor for a share of it in the same write. Each client's batches
        keep their order; what is left waits for the next write.

        Clients of the stores in ``held`` (refusing writes) get no such turn: their flushes wait
        for the store whatever is written, and a write of their own every max_age would restart
        the age of other stores' batches each time, so those would wait for a flush of their own.
        """
        items = self._items
        waiting = [b for b in items if b.session.flushes and b.session.store_root not in held]
        if len(waiting) == len(items):
            waiting = []  # everyone waits (or no one does): a plain write
        if not waiting and self.pending_records <= self.max_records:
            taken, self._items = items, []
        else:
            # The flushing clients' write is short: bench_fairness measured 5-6 ms for the flushing
            # client's 10 points when they shared their write with a flooder's ~4,000 records.
            taken = []
            count = 0
            for batch in waiting or items:
                if count >= self.max_records:
                    break
                taken.append(batch)
                count += batch.events
            chosen = {id(b) for b in taken}
            self._items = [b for b in items if id(b) not in chosen]
            self._oldest = now
        self.pending_records -= sum(b.events for b in taken)
        self.pending_bytes = max(0, self.pending_bytes - sum(b.size for b in taken))
        self._forced = bool(self._items) and self._forced
        return taken


def turns(pending: list[PendingBatch], records_per_turn: int) -> list[list[PendingBatch]]:
    """Cut a write into consecutive turns of about ``records_per_turn`` events, never splitting a batch.

    The journal records each turn as one write, with the highest batch of each client it
    completes, so a batch must lie whole in one turn and each client's batches keep their order.
    """
    parts: list[list[PendingBatch]] = []
    part: list[PendingBatch] = []
    count = 0
    for batch in pending:
        if part and count + batch.events > records_per_turn:
            parts.append(part)
            part, count = [], 0
        part.append(batch)
        count += batch.events
    if part:
        parts.append(part)
    return parts
