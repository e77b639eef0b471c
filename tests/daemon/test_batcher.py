"""The batcher decides when to write: by count, by bytes, by age or on request. Time is passed in."""

from __future__ import annotations

import pytest

from trackd.daemon import Batcher, PendingBatch
from trackd.daemon._batcher import DEFAULT_EAGER_RECORDS, DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS, turns
from trackd.daemon._state import Session
from trackd.protocol import Record

SESSION = Session("client-1", pid=1, host="host", store_root="/tmp/mlruns")


def batch(seq: int, records: int, size: int = 0) -> PendingBatch:
    """A pending batch of ``records`` metric records."""
    rows: list[Record] = [(1, "run", "loss", 0.5, 1000, step) for step in range(records)]
    return PendingBatch(SESSION, seq, rows, len(rows), size)


def test_defaults_write_within_fifty_ms() -> None:
    batcher = Batcher()
    assert (batcher.max_records, batcher.max_bytes, batcher.max_age) == (DEFAULT_MAX_RECORDS, DEFAULT_MAX_BYTES, DEFAULT_MAX_AGE)
    assert DEFAULT_MAX_AGE == 0.05


def test_a_burst_is_written_as_soon_as_eager_records_wait_and_a_trickle_waits_for_its_age() -> None:
    batcher = Batcher(max_records=10**6, max_bytes=10**9, max_age=0.05, eager_records=100)
    assert batcher.add(batch(1, 99), now=0.0) is False
    assert batcher.delay(now=0.0) == pytest.approx(0.05)
    assert batcher.add(batch(2, 1), now=0.0) is True
    assert batcher.delay(now=0.0) == 0.0
    assert DEFAULT_EAGER_RECORDS < DEFAULT_MAX_RECORDS


def test_empty_batcher_has_no_write_due() -> None:
    batcher = Batcher(max_records=10, max_bytes=1000, max_age=1.0)
    assert batcher.delay(now=100.0) is None
    assert batcher.take(now=0.0) == []


def test_write_is_due_when_record_count_reaches_max_records() -> None:
    batcher = Batcher(max_records=10, max_bytes=10**9, max_age=1.0)
    assert batcher.add(batch(1, 6, size=60), now=0.0) is False
    assert batcher.delay(now=0.0) == pytest.approx(1.0)
    assert batcher.add(batch(2, 4, size=40), now=0.0) is True
    assert batcher.delay(now=0.0) == 0.0


def test_write_is_due_when_bytes_reach_max_bytes() -> None:
    batcher = Batcher(max_records=10**6, max_bytes=1000, max_age=1.0)
    assert batcher.add(batch(1, 1, size=999), now=0.0) is False
    assert batcher.add(batch(2, 1, size=1), now=0.0) is True
    assert batcher.delay(now=0.0) == 0.0


def test_write_is_due_max_age_after_the_oldest_pending_batch() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=0.05)
    batcher.add(batch(1, 1, size=10), now=10.0)
    # A later batch does not move the deadline: the oldest point sets it.
    batcher.add(batch(2, 1, size=10), now=10.04)
    assert batcher.delay(now=10.0) == pytest.approx(0.05)
    assert batcher.delay(now=10.03) == pytest.approx(0.02)
    assert batcher.delay(now=10.05) == 0.0
    # Past the deadline the delay stays 0, never negative.
    assert batcher.delay(now=99.0) == 0.0


def test_request_write_makes_a_write_due_at_once() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=5.0)
    batcher.add(batch(1, 1, size=10), now=0.0)
    batcher.request_write()
    assert batcher.delay(now=0.0) == 0.0


def test_request_write_with_nothing_pending_has_no_write_due() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=5.0)
    batcher.request_write()
    assert batcher.delay(now=0.0) is None


def test_take_returns_batches_in_arrival_order_and_resets_counts() -> None:
    batcher = Batcher(max_records=10, max_bytes=10**6, max_age=1.0)
    first, second = batch(1, 4, size=40), batch(2, 6, size=60)
    batcher.add(first, now=0.0)
    batcher.add(second, now=0.0)
    batcher.request_write()
    assert batcher.take(now=0.0) == [first, second]
    assert (batcher.pending_records, batcher.pending_bytes) == (0, 0)
    assert batcher.delay(now=0.0) is None


def test_take_clears_a_requested_write() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=1.0)
    batcher.add(batch(1, 1, size=10), now=0.0)
    batcher.request_write()
    batcher.take(now=0.0)
    batcher.add(batch(2, 1, size=10), now=5.0)
    assert batcher.delay(now=5.0) == pytest.approx(1.0)


def test_age_restarts_from_the_first_batch_after_take() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=0.05)
    batcher.add(batch(1, 1, size=10), now=0.0)
    batcher.take(now=0.0)
    batcher.add(batch(2, 1, size=10), now=3.0)
    assert batcher.delay(now=3.01) == pytest.approx(0.04)


def test_pending_counts_track_what_was_added() -> None:
    batcher = Batcher(max_records=100, max_bytes=10**6, max_age=1.0)
    batcher.add(batch(1, 3, size=30), now=0.0)
    batcher.add(batch(2, 5, size=70), now=0.0)
    assert (batcher.pending_records, batcher.pending_bytes) == (8, 100)


def test_a_flooding_client_cannot_make_a_flushing_neighbour_wait_for_the_whole_backlog() -> None:
    flooder = Session("flooder", pid=2, host="host", store_root="/tmp/mlruns")
    neighbour = Session("neighbour", pid=3, host="host", store_root="/tmp/mlruns")
    batcher = Batcher(max_records=10, max_bytes=10**9, max_age=1.0)
    for seq in range(1, 6):
        batcher.add(PendingBatch(flooder, seq, batch(seq, 5).records, 5, 50), now=0.0)
    batcher.add(PendingBatch(neighbour, 1, batch(1, 2).records, 2, 20), now=0.0)
    neighbour.flushes.append((1, 1))
    # The waiting client gets a short write of its own; the flood follows in its own order.
    assert [(b.session.client_id, b.seq) for b in batcher.take(now=0.0)] == [("neighbour", 1)]
    neighbour.flushes.clear()
    assert [b.seq for b in batcher.take(now=0.0)] == [1, 2]
    assert [b.seq for b in batcher.take(now=0.0)] == [3, 4]
    assert [b.seq for b in batcher.take(now=0.0)] == [5]
    assert batcher.pending_records == 0


def test_a_flushing_client_gets_a_write_of_its_own_even_below_max_records() -> None:
    flooder = Session("flooder", pid=2, host="host", store_root="/tmp/mlruns")
    neighbour = Session("neighbour", pid=3, host="host", store_root="/tmp/mlruns")
    batcher = Batcher(max_records=1000, max_bytes=10**9, max_age=1.0)
    batcher.add(PendingBatch(flooder, 1, batch(1, 50).records, 50, 500), now=0.0)
    batcher.add(PendingBatch(neighbour, 1, batch(1, 2).records, 2, 20), now=0.0)
    batcher.add(PendingBatch(flooder, 2, batch(2, 50).records, 50, 500), now=0.0)
    neighbour.flushes.append((1, 1))
    # Sharing the write with the flood made the flush wait for the flood's points too (5-6 ms).
    assert [(b.session.client_id, b.seq) for b in batcher.take(now=0.0)] == [("neighbour", 1)]
    neighbour.flushes.clear()
    assert [(b.session.client_id, b.seq) for b in batcher.take(now=0.0)] == [("flooder", 1), ("flooder", 2)]


def test_when_every_client_waits_on_a_flush_the_write_is_a_plain_one() -> None:
    waiting = Session("waiting", pid=4, host="host", store_root="/tmp/mlruns")
    waiting.flushes.append((1, 2))
    batcher = Batcher(max_records=1000, max_bytes=10**9, max_age=1.0)
    batcher.add(PendingBatch(waiting, 1, batch(1, 5).records, 5, 50), now=0.0)
    batcher.add(PendingBatch(waiting, 2, batch(2, 5).records, 5, 50), now=0.0)
    assert [b.seq for b in batcher.take(now=0.0)] == [1, 2]


def test_a_client_waiting_on_a_held_store_gets_no_write_of_its_own() -> None:
    # Its flush waits for its store whatever the batcher does; a write of its own every max_age
    # would restart the age of the other stores' batches each time, so they would never come due.
    held = Session("held", pid=5, host="host", store_root="/full/mlruns")
    held.flushes.append((1, 9))
    other = Session("other", pid=6, host="host", store_root="/tmp/mlruns")
    batcher = Batcher(max_records=1000, max_bytes=10**9, max_age=1.0)
    batcher.add(PendingBatch(held, 1, batch(1, 5).records, 5, 50), now=0.0)
    batcher.add(PendingBatch(other, 1, batch(1, 5).records, 5, 50), now=0.0)
    taken = batcher.take(now=1.0, held={"/full/mlruns"})
    assert [(b.session.client_id, b.seq) for b in taken] == [("held", 1), ("other", 1)]


def sizes(parts: list[list[PendingBatch]]) -> list[list[int]]:
    return [[len(b.records) for b in part] for part in parts]


def test_turns_cut_a_write_at_batch_boundaries_in_order() -> None:
    pending = [batch(seq, records) for seq, records in enumerate([3, 3, 3, 9, 1, 1], start=1)]
    parts = turns(pending, records_per_turn=6)
    assert sizes(parts) == [[3, 3], [3], [9], [1, 1]]
    # A batch larger than a turn goes whole, alone; nothing is lost, reordered or split.
    assert [b.seq for part in parts for b in part] == [1, 2, 3, 4, 5, 6]


def test_turns_of_an_empty_write_are_none() -> None:
    assert turns([], records_per_turn=10) == []
