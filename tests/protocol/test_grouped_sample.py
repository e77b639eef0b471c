"""A chunk of many keys in random order, each with many points, travels as one series per file.

``_grouped`` looks at the chunk's first records before grouping the whole of it. With a look at
256 records, 100 keys logged in random order (~92 files in those 256 records, under four points
each) were never grouped, even with 50 points a key in the chunk: each point then cost the daemon
a record's check and translation instead of a share of its series'.
"""

from __future__ import annotations

import random

from trackd.protocol import Record, metric_series

RUN = "0" * 32
METRIC, METRIC_SERIES = 1, 8


def _shuffled(keys: int, points: int) -> list[Record]:
    rng = random.Random(1)
    records: list[Record] = [(METRIC, RUN, f"k{key}", float(step), 1000 + step, step) for key in range(keys) for step in range(points)]
    rng.shuffle(records)
    return records


def test_a_hundred_keys_in_random_order_with_fifty_points_each_go_as_a_series_per_key() -> None:
    records = _shuffled(100, 50)
    out = metric_series(records)
    assert out is not None and len(out) == 100 and {r[0] for r in out} == {METRIC_SERIES}
    for series in out:
        # Each file's points in their order in the chunk.
        assert list(series[5]) == [r[5] for r in records if r[2] == series[2]]


def test_a_chunk_of_one_point_a_file_still_travels_record_by_record() -> None:
    records: list[Record] = [(METRIC, f"{run:032d}", f"k{key}", 1.0, 1000, 0) for run in range(100) for key in range(100)]
    assert metric_series(records) is None
