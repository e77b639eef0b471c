"""Records: every malformed record is refused with a message naming the field; good ones pass."""

from __future__ import annotations

import math
import random

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trackd.errors import LocalProtocolError, RemoteProtocolError
from trackd.protocol import (
    MAX_INLINE_ARTIFACT_SIZE,
    MAX_NAME_LENGTH,
    MAX_RECORDS_PER_BATCH,
    MAX_TAGS_PER_RECORD,
    MAX_TEXT_LENGTH,
    Batch,
    Record,
    RecordKind,
    check_record,
    metric_series,
)

from protocol_helpers import open_pair

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
RUN = "run1"
METRIC: Record = (1, RUN, "loss", 0.5, 1_700_000_000_000, 3)
CREATE_RUN: Record = (5, RUN, "0", "alice", "run-name", 1_700_000_000_000, {"mlflow.user": "alice"})

# (record, what the message must contain). Every record here packs with msgpack, so the same
# table is also sent over the wire.
BAD_RECORDS: list[tuple[str, object, str]] = [
    ("unknown-kind", (99, RUN, "k"), "Unknown record kind 99"),
    ("bool-kind", (True, RUN, "loss", 0.5, 0, 0), "Unknown record kind True"),
    ("str-kind", ("metric", RUN, "loss", 0.5, 0, 0), "Unknown record kind 'metric'"),
    ("empty-record", (), "non-empty array"),
    ("metric-too-few-fields", (1, RUN, "loss", 0.5, 0), r"metric record has 4 fields; expected 5 \(run_id, key, value, timestamp_ms, step\)"),
    ("param-too-many-fields", (2, RUN, "k", "v", "extra"), "param record has 4 fields; expected 3"),
    ("metric-bool-value", (1, RUN, "loss", True, 0, 0), "field 'value'"),
    ("metric-str-value", (1, RUN, "loss", "0.5", 0, 0), "field 'value'"),
    ("metric-nil-value", (1, RUN, "loss", None, 0, 0), "field 'value'"),
    ("metric-value-beyond-int64", (1, RUN, "loss", MAX_INT64 + 1, 0, 0), "field 'value'"),
    ("metric-float-step", (1, RUN, "loss", 0.5, 0, 1.0), "field 'step'"),
    ("metric-step-beyond-int64", (1, RUN, "loss", 0.5, 0, MAX_INT64 + 1), "field 'step'"),
    ("metric-negative-timestamp", (1, RUN, "loss", 0.5, -1, 0), "field 'timestamp_ms'"),
    ("metric-float-timestamp", (1, RUN, "loss", 0.5, 1.5, 0), "field 'timestamp_ms'"),
    ("metric-timestamp-beyond-int64", (1, RUN, "loss", 0.5, MAX_INT64 + 1, 0), "field 'timestamp_ms'"),
    ("metric-int-key", (1, RUN, 5, 0.5, 0, 0), "field 'key'"),
    ("metric-bytes-key", (1, RUN, b"loss", 0.5, 0, 0), "field 'key'"),
    ("metric-empty-run-id", (1, "", "loss", 0.5, 0, 0), "field 'run_id'"),
    ("metric-nil-run-id", (1, None, "loss", 0.5, 0, 0), "field 'run_id'"),
    ("metric-long-run-id", (1, "r" * (MAX_NAME_LENGTH + 1), "loss", 0.5, 0, 0), "field 'run_id'"),
    ("param-long-key", (2, RUN, "k" * (MAX_NAME_LENGTH + 1), "v"), "field 'key'"),
    ("param-long-value", (2, RUN, "k", "v" * (MAX_TEXT_LENGTH + 1)), "field 'value'"),
    ("param-int-value", (2, RUN, "k", 1), "field 'value'"),
    ("tag-nil-value", (3, RUN, "k", None), "field 'value'"),
    ("delete-tag-empty-key", (4, RUN, ""), "field 'key'"),
    ("create-run-empty-experiment-id", (5, RUN, "", "u", "n", 0, {}), "field 'experiment_id'"),
    ("create-run-int-user-id", (5, RUN, "0", 7, "n", 0, {}), "field 'user_id'"),
    ("create-run-negative-start-time", (5, RUN, "0", "u", "n", -5, {}), "field 'start_time_ms'"),
    ("create-run-tags-not-a-map", (5, RUN, "0", "u", "n", 0, ("a", "b")), "field 'tags'"),
    ("create-run-too-many-tags", (5, RUN, "0", "u", "n", 0, {str(i): "" for i in range(MAX_TAGS_PER_RECORD + 1)}), "field 'tags'"),
    ("create-run-tag-int-value", (5, RUN, "0", "u", "n", 0, {"a": 1}), "tag 'a' must map a string key to a string value, got 1"),
    ("create-run-tag-nil-value", (5, RUN, "0", "u", "n", 0, {"a": None}), "tag 'a'"),
    ("create-run-tag-bytes-key", (5, RUN, "0", "u", "n", 0, {b"a": "b"}), "tag b'a'"),
    ("create-run-tag-long-value", (5, RUN, "0", "u", "n", 0, {"a": "v" * (MAX_TEXT_LENGTH + 1)}), "tag 'a'"),
    ("set-terminated-negative-status", (6, RUN, -1, 0, False), "field 'status'"),
    ("set-terminated-str-end-time", (6, RUN, 3, "now", False), "field 'end_time_ms'"),
    ("set-terminated-int-keep-failure", (6, RUN, 3, 0, 1), "field 'keep_failure'"),
    ("set-terminated-nil-unless-owned", (6, RUN, 3, 0, True, None), "field 'unless_owned'"),
    ("set-terminated-too-many-fields", (6, RUN, 3, 0, True, True, True), "has 6 fields; expected 5"),
    ("artifact-both-content-and-source", (7, RUN, "a.txt", b"hi", "/f"), "exactly one of 'content' .* and 'source_path'"),
    ("artifact-neither-content-nor-source", (7, RUN, "a.txt", None, None), "exactly one of 'content' .* and 'source_path'"),
    ("artifact-str-content", (7, RUN, "a.txt", "hi", None), "exactly one of 'content' \\(bytes\\)"),
    ("artifact-empty-source-path", (7, RUN, "a.txt", None, ""), "field 'source_path'"),
    ("artifact-empty-path", (7, RUN, "", b"hi", None), "field 'path'"),
    ("series-too-few-fields", (8, RUN, "loss", (0.5,), (0,)), "metric series record has 4 fields; expected 5"),
    ("series-values-not-an-array", (8, RUN, "loss", 0.5, (0,), (0,)), "field 'values' must be an array of 1 to"),
    ("series-empty", (8, RUN, "loss", (), (), ()), "field 'values' must be an array of 1 to"),
    ("series-unequal-lengths", (8, RUN, "loss", (0.5, 0.6), (0, 0), (0,)), "2 values, 2 timestamps and 1 steps"),
    ("series-str-value", (8, RUN, "loss", (0.5, "0.6"), (0, 0), (0, 1)), "field 'values' must hold floats .* got '0.6'"),
    ("series-bool-value", (8, RUN, "loss", (True,), (0,), (0,)), "field 'values' .* got True"),
    ("series-value-beyond-int64", (8, RUN, "loss", (1.0, MAX_INT64 + 1), (0, 0), (0, 1)), "field 'values' .* got 9223372036854775808"),
    ("series-float-step", (8, RUN, "loss", (0.5, 0.5), (0, 0), (0, 1.0)), "field 'steps' must hold integers .* got 1.0"),
    ("series-negative-timestamp", (8, RUN, "loss", (0.5,), (-1,), (0,)), "field 'timestamps_ms' .* got -1"),
    ("series-step-beyond-int64", (8, RUN, "loss", (0.5,), (0,), (MAX_INT64 + 1,)), "field 'steps' .* got 9223372036854775808"),
    ("series-int-key", (8, RUN, 5, (0.5,), (0,), (0,)), "field 'key'"),
    ("artifact-content-over-inline-limit", (7, RUN, "big.bin", bytes(MAX_INLINE_ARTIFACT_SIZE + 1), None),
     f"field 'content' holds {MAX_INLINE_ARTIFACT_SIZE + 1} bytes; at most {MAX_INLINE_ARTIFACT_SIZE}"),
    ("artifact-stamp-with-content", (7, RUN, "a.txt", b"x", None, (1, 2)), "field 'source_stamp' must be nil or, with a 'source_path'"),
    ("artifact-stamp-not-a-pair", (7, RUN, "w.bin", None, "/tmp/w.bin", (1,)), "field 'source_stamp' .* got \\(1,\\)"),
    ("artifact-stamp-negative-size", (7, RUN, "w.bin", None, "/tmp/w.bin", (-1, 9)), "field 'source_stamp' .* got \\(-1, 9\\)"),
    ("artifact-stamp-str", (7, RUN, "w.bin", None, "/tmp/w.bin", "9 1"), "field 'source_stamp' .* got '9 1'"),
    ("artifact-too-many-fields", (7, RUN, "w.bin", None, "/tmp/w.bin", None, None, None), "artifact record has 7 fields; expected 6"),
]
BAD = [pytest.param(record, match, id=name) for name, record, match in BAD_RECORDS]


@pytest.mark.parametrize(("record", "match"), BAD)
def test_check_record_refuses_bad_record_naming_the_field(record: object, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        check_record(record)


@pytest.mark.parametrize(("record", "match"), BAD)
def test_batch_with_bad_record_cannot_be_built(record: Record, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        Batch(seq=1, records=[METRIC, record])


@pytest.mark.parametrize(("record", "match"), BAD)
def test_daemon_refuses_bad_record_from_the_wire_naming_the_field(record: Record, match: str) -> None:
    daemon = open_pair().daemon
    body = msgpack.packb([3, 1, [METRIC, record]], use_bin_type=True)
    daemon.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError, match=match):
        daemon.next_event()


@pytest.mark.parametrize("value", [MIN_INT64 - 1, 2**64, 10**30])
def test_metric_int_value_that_msgpack_cannot_pack_is_refused_at_construction(value: int) -> None:
    # This used to pass the check and then raise OverflowError from Connection.send.
    with pytest.raises(LocalProtocolError, match="field 'value' must be a float or an integer"):
        Batch(seq=1, records=[(1, RUN, "loss", value, 0, 0)])


def test_step_below_int64_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="field 'step'"):
        check_record((1, RUN, "loss", 0.5, 0, MIN_INT64 - 1))


def test_record_given_as_a_list_is_refused() -> None:
    # Records are tuples on both sides: msgpack decodes arrays as tuples, and the client builds tuples.
    with pytest.raises(LocalProtocolError, match="must be a non-empty array"):
        check_record([1, RUN, "loss", 0.5, 0, 0])


GOOD_RECORDS: list[tuple[str, Record]] = [
    ("metric-nan", (1, RUN, "loss", math.nan, 0, 0)),
    ("metric-inf", (1, RUN, "loss", math.inf, 0, 0)),
    ("metric-negative-inf", (1, RUN, "loss", -math.inf, 0, 0)),
    ("metric-negative-step", (1, RUN, "loss", 0.5, 0, -10)),
    ("metric-int64-bounds", (1, RUN, "loss", MIN_INT64, MAX_INT64, MIN_INT64)),
    ("metric-int-value", (1, RUN, "loss", 3, 0, MAX_INT64)),
    ("metric-zero-timestamp", (1, RUN, "loss", -0.0, 0, 0)),
    ("param-empty-value", (2, RUN, "k", "")),
    ("param-longest-value", (2, RUN, "k", "v" * MAX_TEXT_LENGTH)),
    ("tag-longest-key", (3, "r" * MAX_NAME_LENGTH, "k" * MAX_NAME_LENGTH, "v")),
    ("delete-tag", (4, RUN, "k")),
    ("create-run", CREATE_RUN),
    ("create-run-no-tags", (5, RUN, "0", "", "", 0, {})),
    ("set-terminated", (6, RUN, 3, 1_700_000_000_000, True)),
    ("artifact-empty-content", (7, RUN, "empty.txt", b"", None)),
    ("series", (8, RUN, "loss", (0.5, math.nan, 3, MIN_INT64), (0, 1, 2, MAX_INT64), (MIN_INT64, -1, 0, MAX_INT64))),
    ("artifact-content-at-inline-limit", (7, RUN, "big.bin", bytes(MAX_INLINE_ARTIFACT_SIZE), None)),
    ("artifact-source-path", (7, RUN, "model/weights.bin", None, "/tmp/weights.bin", (9_437_184, 1_795_665_806_606_000_123))),
    ("artifact-content-stamp-nil", (7, RUN, "a.txt", b"x", None, None)),
    # A file dated before 1970 (unpacked from an old archive) has a negative mtime_ns.
    ("artifact-source-path-before-1970", (7, RUN, "old.bin", None, "/tmp/old.bin", (9_437_184, -86_400_000_000_000))),
    # Protocol 3 had no source_stamp: a spool file it wrote is still delivered after an upgrade.
    ("artifact-source-path-protocol-3", (7, RUN, "model/weights.bin", None, "/tmp/weights.bin")),
]
GOOD = [pytest.param(record, id=name) for name, record in GOOD_RECORDS]


@pytest.mark.parametrize("record", GOOD)
def test_check_record_accepts_good_record(record: Record) -> None:
    check_record(record)


@pytest.mark.parametrize("record", GOOD)
def test_good_record_crosses_the_wire_unchanged(record: Record) -> None:
    pair = open_pair()
    (batch,) = pair.send(pair.client.our_role, Batch(seq=1, records=[record]))
    assert isinstance(batch, Batch)
    # repr, because NaN != NaN.
    assert repr(batch.records) == repr([record])


def test_record_kind_member_is_accepted_as_its_int() -> None:
    # check_record used to refuse RecordKind.METRIC, though the module says a record starts with its RecordKind.
    check_record((RecordKind.METRIC, RUN, "loss", 0.5, 0, 0))


def test_batch_counts_events_with_a_series_as_its_points() -> None:
    batch = Batch(seq=1, records=[METRIC, (8, RUN, "acc", (0.1, 0.2, 0.3), (0, 0, 0), (1, 2, 3)), CREATE_RUN])
    assert batch.events == 5


def test_batch_of_more_points_than_a_batch_may_hold_is_refused() -> None:
    n = MAX_RECORDS_PER_BATCH // 2 + 1
    series = (8, RUN, "loss", (0.5,) * n, (0,) * n, (0,) * n)
    with pytest.raises(LocalProtocolError, match=f"holds {2 * n} events; at most {MAX_RECORDS_PER_BATCH}"):
        Batch(seq=1, records=[series, series])


def points(run_id: str, keys: list[str], steps: int, start: int = 0) -> list[Record]:
    return [(1, run_id, key, float(step), 1000 + step, step) for step in range(start, start + steps) for key in keys]


def test_a_training_loops_cycle_of_points_becomes_one_series_per_key() -> None:
    # Starting mid-cycle and ending in a partial one, as a chunk of the sender's buffer does.
    records = points(RUN, ["a", "b", "c"], 5)[1:-1]
    series = metric_series(records)
    assert series == [
        (8, RUN, "b", (0.0, 1.0, 2.0, 3.0, 4.0), (1000, 1001, 1002, 1003, 1004), (0, 1, 2, 3, 4)),
        (8, RUN, "c", (0.0, 1.0, 2.0, 3.0), (1000, 1001, 1002, 1003), (0, 1, 2, 3)),
        (8, RUN, "a", (1.0, 2.0, 3.0, 4.0), (1001, 1002, 1003, 1004), (1, 2, 3, 4)),
    ]
    assert Batch(seq=1, records=series).events == len(records)


def test_several_runs_logged_in_turn_become_one_series_per_run_and_key() -> None:
    # A sweep in one process: each step logs keys a and b of run 1, then of run 2, then of run 3.
    runs = ["run1", "run2", "run3"]
    records = [record for step in range(4) for run_id in runs for record in points(run_id, ["a", "b"], 1, step)]
    series = metric_series(records)
    assert series is not None and [(r[0], r[1], r[2], r[5]) for r in series] == [
        (8, run_id, key, (0, 1, 2, 3)) for run_id in runs for key in ["a", "b"]
    ]


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(points(RUN, ["a"], 2) + [(2, RUN, "lr", "0.1")] + points(RUN, ["a"], 2, 2), id="param-mixed-in"),
        pytest.param([(1, RUN, f"k{i}", 0.5, 1000, 0) for i in range(100)], id="every-point-its-own-file"),
        pytest.param([], id="empty"),
    ],
)
def test_points_without_a_usable_cycle_travel_as_records(records: list[Record]) -> None:
    assert metric_series(records) is None


@pytest.mark.parametrize(
    "records",
    [pytest.param([METRIC], id="one-point"), pytest.param(points(RUN, ["a", "b"], 1), id="one-step")],
)
def test_series_of_fewer_than_two_points_each_are_not_worth_it(records: list[Record]) -> None:
    assert metric_series(records) is None


def test_an_eval_metric_breaking_the_cycle_travels_plain_between_series() -> None:
    # Every 3 steps an eval point: the cycles around it still travel as series, in order.
    records = points(RUN, ["a", "b"], 3) + [(1, RUN, "eval", 9.0, 1003, 3)] + points(RUN, ["a", "b"], 3, 3)
    assert metric_series(records) == [
        (8, RUN, "a", (0.0, 1.0, 2.0), (1000, 1001, 1002), (0, 1, 2)),
        (8, RUN, "b", (0.0, 1.0, 2.0), (1000, 1001, 1002), (0, 1, 2)),
        (1, RUN, "eval", 9.0, 1003, 3),
        (8, RUN, "a", (3.0, 4.0, 5.0), (1003, 1004, 1005), (3, 4, 5)),
        (8, RUN, "b", (3.0, 4.0, 5.0), (1003, 1004, 1005), (3, 4, 5)),
    ]


def test_a_key_twice_in_a_cycle_is_grouped_per_key() -> None:
    records = points(RUN, ["a", "b", "a"], 4)  # a b a a b a ...: no cycle of distinct pairs
    assert metric_series(records) == [
        (8, RUN, "a", (0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0), tuple(1000 + s for s in (0, 0, 1, 1, 2, 2, 3, 3)),
         (0, 0, 1, 1, 2, 2, 3, 3)),
        (8, RUN, "b", (0.0, 1.0, 2.0, 3.0), (1000, 1001, 1002, 1003), (0, 1, 2, 3)),
    ]


def test_files_of_fewer_than_four_points_each_are_not_grouped() -> None:
    # Two-point series cost the daemon more to check than the records they replace.
    assert metric_series(points(RUN, ["a", "b", "a"], 2)) is None


def test_a_shuffled_chunk_travels_as_one_series_per_key() -> None:
    # Keys in no set order (threads logging their own keys in turn): no cycle, but each file's
    # points still go together, in order, at a series' cost to the daemon.
    rng = random.Random(7)
    records: list[Record] = [(1, RUN, f"k{rng.randrange(50)}", 0.5, 1000, i) for i in range(5000)]
    out = metric_series(records)
    assert out is not None and len(out) == 50 and {r[0] for r in out} == {8}
    for series in out:
        assert list(series[5]) == [r[5] for r in records if r[2] == series[2]]


def test_a_chunk_mostly_without_cycle_keeps_its_singletons_as_records() -> None:
    # Two threads: one logs "loss" each step, the other one of three keys in turn between, and
    # an eval point once: no cycle of distinct pairs, so per key.
    records: list[Record] = []
    for step in range(40):
        records.append((1, RUN, "loss", 0.5, 1000 + step, step))
        records.append((1, RUN, f"io_{step % 3}", 1.0, 1000 + step, step))
    records.insert(31, (1, RUN, "eval", 0.25, 1015, 15))
    out = metric_series(records)
    assert out is not None
    assert [(r[0], r[2]) for r in out] == [(8, "loss"), (8, "io_0"), (8, "io_1"), (8, "io_2"), (1, "eval")]
    assert out[0] == (8, RUN, "loss", (0.5,) * 40, tuple(1000 + s for s in range(40)), tuple(range(40)))
    assert out[1][5] == tuple(range(0, 40, 3))
    assert out[4] == records[31]


@given(st.lists(st.tuples(st.sampled_from(["r1", "r2"]), st.sampled_from(["a", "b", "c", "d"])), max_size=300))
def test_series_and_plain_records_hold_every_point_of_each_file_in_order(pairs: list[tuple[str, str]]) -> None:
    records: list[Record] = [(1, run_id, key, float(i), 1000 + i, i) for i, (run_id, key) in enumerate(pairs)]
    out = metric_series(records) or records
    per_file: dict[tuple[str, str], list[int]] = {}
    for record in out:
        steps = record[5] if record[0] == 8 else (record[5],)
        per_file.setdefault((record[1], record[2]), []).extend(steps)
    expected: dict[tuple[str, str], list[int]] = {}
    for run_id, key, step in ((r[1], r[2], r[5]) for r in records):
        expected.setdefault((run_id, key), []).append(step)
    assert per_file == expected


@given(
    st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=30),
    st.lists(st.integers(min_value=0, max_value=400), max_size=5),
)
def test_sweeps_with_breaks_keep_every_point_of_each_file_in_order(runs: int, keys: int, steps: int, breaks: list[int]) -> None:
    # Several runs logged in turn, each the same keys, with eval points breaking the cycle here and there.
    records: list[Record] = [
        (1, f"r{r}", f"k{k}", 0.5, 1000 + step, step) for step in range(steps) for r in range(runs) for k in range(keys)
    ]
    for at in sorted(breaks, reverse=True):
        records.insert(min(at, len(records)), (1, "r0", "eval", 0.25, 1, at))
    out = metric_series(records) or records
    per_file: dict[tuple[str, str], list[int]] = {}
    for record in out:
        per_file.setdefault((record[1], record[2]), []).extend(record[5] if record[0] == 8 else (record[5],))
    expected: dict[tuple[str, str], list[int]] = {}
    for record in records:
        expected.setdefault((record[1], record[2]), []).append(record[5])
    assert per_file == expected


def test_a_record_of_one_field_says_field_not_fields() -> None:
    # "metric record has 1 fields": the daemon's refusal of a garbled record, quoted to its client.
    with pytest.raises(LocalProtocolError, match=r"metric record has 1 field; expected 5 "):
        check_record((1, RUN))
