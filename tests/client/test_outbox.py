"""next_chunk: how the sender cuts its buffer into batch frames, in order, stopping at a flush barrier."""

from __future__ import annotations

import collections

import pytest

from trackd.client._outbox import BARRIER, Request, events, next_chunk
from trackd.protocol import ARTIFACT, METRIC, PARAM, Record


def metric(step: int) -> Record:
    return (METRIC, "run", "loss", 0.5, 1000, step)


def test_metric_points_are_taken_up_to_the_record_limit_and_the_rest_stays_in_order() -> None:
    buffer: collections.deque[Record] = collections.deque(metric(i) for i in range(25))
    records, barrier = next_chunk(buffer, 10, 1 << 20)
    assert records == [metric(i) for i in range(10)] and barrier is None
    assert list(buffer) == [metric(i) for i in range(10, 25)]


def test_a_flush_barrier_ends_the_chunk_and_what_follows_it_stays_in_order() -> None:
    request = Request(1, lambda request_id: None)  # type: ignore[arg-type,return-value]
    param: Record = (PARAM, "run", "lr", "0.1")
    buffer: collections.deque[Record] = collections.deque(
        [metric(0), metric(1), param, metric(2), (BARRIER, request), metric(3), metric(4)]
    )
    records, barrier = next_chunk(buffer, 100, 1 << 20)
    assert records == [metric(0), metric(1), param, metric(2)] and barrier is request
    assert list(buffer) == [metric(3), metric(4)]


def test_an_inline_artifact_ends_its_chunk() -> None:
    artifact: Record = (ARTIFACT, "run", "a.bin", b"x" * 1000, None)
    buffer: collections.deque[Record] = collections.deque([metric(0), artifact, metric(1)])
    assert next_chunk(buffer, 100, 1 << 20) == ([metric(0), artifact], None)
    assert list(buffer) == [metric(1)]


def test_the_byte_estimate_bounds_a_chunk_of_metric_points() -> None:
    buffer: collections.deque[Record] = collections.deque(metric(i) for i in range(100))
    records, _ = next_chunk(buffer, 100, 64 * 30)
    assert len(records) == 30 and len(buffer) == 70


def test_an_empty_buffer_gives_an_empty_chunk() -> None:
    assert next_chunk(collections.deque(), 100, 1 << 20) == ([], None)


@pytest.mark.parametrize(
    ("count", "verb", "more", "expected"),
    [
        (1, "were not delivered", False, "1 event was not delivered"),
        (3, "were not delivered", True, "3 more events were not delivered"),
        (1, "are held", False, "1 event is held"),
        (0, "", False, "0 events"),
        (1, "", False, "1 event"),
    ],
)
def test_warnings_count_events_in_good_english(count: int, verb: str, more: bool, expected: str) -> None:
    # A reviewer's stderr said "Holding 1 events and retrying".
    assert events(count, verb, more=more) == expected
