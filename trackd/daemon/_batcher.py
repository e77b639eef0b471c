"""The batcher: holds received batches and decides when they are written.

Writes happen by count, by bytes or by age, whichever comes first, so a busy client gets large
efficient writes and a quiet one still reaches the store within ``max_age`` seconds. Time is passed
in as ``now``, so tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..protocol import Record
    from ._state import Session

# The most events one write takes (a client's batch is never split). What a write costs is mostly
# per file (a write() and an fstat() each, ~5 us here) when points spread over many files, and per
# point otherwise (~0.3 us), so a larger write puts more points behind each file's syscalls:
# round-robin over 10,000 files, 65,536 gave ~2x the points/s of 16,384 (2026-11-26), while a
# write of 65,536 points to a few files still takes ~20 ms, what a 16,384-record write took before
# metric lines were formatted in C. That is how long a neighbour's flush can wait behind a flood.
DEFAULT_MAX_RECORDS = 65_536
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
# The bound: a point waits at most 50 ms in the daemon before its write starts.
DEFAULT_MAX_AGE = 0.05
# Rough wire size of a record, for the byte threshold (a metric record is ~50 bytes of msgpack).
RECORD_SIZE_ESTIMATE = 48


@dataclass(slots=True)
class PendingBatch:
    """One client batch waiting to be written."""

    session: Session
    seq: int
    records: list[Record]
    # Events the records hold (a metric series counts its points): what writes are sized by.
    events: int


@dataclass(slots=True)
class Batcher:
    """Collects pending batches and says when to write them."""

    max_records: int = DEFAULT_MAX_RECORDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: float = DEFAULT_MAX_AGE
    pending_records: int = 0
    pending_bytes: int = 0
    _items: list[PendingBatch] = field(default_factory=list)
    _oldest: float = 0.0
    _forced: bool = False

    def add(self, batch: PendingBatch, size: int, now: float) -> bool:
        """Queue ``batch`` (``size`` bytes on the wire); return True if a write is now due."""
        if not self._items:
            self._oldest = now
        self._items.append(batch)
        self.pending_records += batch.events
        self.pending_bytes += size
        return self.pending_records >= self.max_records or self.pending_bytes >= self.max_bytes

    def request_write(self) -> None:
        """Make the next write due at once (a flush barrier or shutdown is waiting)."""
        self._forced = True

    def delay(self, now: float) -> float | None:
        """Seconds until a write is due: 0 if due now, None if nothing is pending."""
        if not self._items:
            return None
        if self._forced or self.pending_records >= self.max_records or self.pending_bytes >= self.max_bytes:
            return 0.0
        return max(0.0, self.max_age - (now - self._oldest))

    def requeue(self, batches: list[PendingBatch], now: float) -> None:
        """Put batches whose write failed back in front, to be written again first."""
        if not batches:
            return
        self._items[0:0] = batches
        self._oldest = now
        events = sum(b.events for b in batches)
        self.pending_records += events
        self.pending_bytes += events * RECORD_SIZE_ESTIMATE

    def take(self, now: float) -> list[PendingBatch]:
        """Hand the next write's batches to the writer: at most about ``max_records`` records.

        Batches of clients waiting on a flush go first, so a client that floods the daemon makes
        a neighbour's flush wait for one write at most, not for the whole flood. Each client's
        batches keep their order; what is left waits for the next write.
        """
        items = self._items
        if self.pending_records <= self.max_records:
            taken, self._items = items, []
        else:
            # Clients waiting on a flush get a write of their own: short, so their flush does not
            # wait behind a neighbour's flood (only the write already under way).
            waiting = [b for b in items if b.session.flushes]
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
        taken_records = sum(b.events for b in taken)
        self.pending_records -= taken_records
        self.pending_bytes = max(0, self.pending_bytes - taken_records * RECORD_SIZE_ESTIMATE)
        self._forced = bool(self._items) and self._forced
        return taken
