"""Metric lines: the fast formatter writes exactly the text MLflow's ``str(float)`` writes."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trackd.store._format import format_metric_files, format_metric_lines

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TIMESTAMP = st.integers(min_value=0, max_value=2**63 - 1)
POINT = st.tuples(TIMESTAMP, st.floats(allow_nan=True, allow_infinity=True), INT64)


def mlflow_lines(points: list[tuple[int, float, int]]) -> bytes:
    """What FileStore._log_run_metric writes: ``"%s %s %s\\n" % (timestamp, value, step)``."""
    return b"".join(f"{ts} {value} {step}\n".encode() for ts, value, step in points)


@given(st.lists(POINT, max_size=1200))
def test_lines_equal_mlflows_for_any_points(points: list[tuple[int, float, int]]) -> None:
    assert format_metric_lines(points) == mlflow_lines(points)


def test_lines_equal_mlflows_for_every_kind_of_double() -> None:
    rng = random.Random(20261126)
    # Random bit patterns cover every exponent; the rest are the values metrics really take.
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(100_000)]
    values += [rng.random() * 10.0**e for e in range(-320, 300) for _ in range(50)]
    values += [float(i) for i in range(-2000, 2000)] + [i / 1000 for i in range(-5000, 5000)]
    values += [2.0**k for k in range(-1074, 1024)] + [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e16, 1e-4]
    points = [(1_764_144_000_000 + i, value, i - 50_000) for i, value in enumerate(values)]
    assert format_metric_lines(points) == mlflow_lines(points)


@pytest.mark.parametrize(
    "value, text",
    [(1e-05, "1e-05"), (1.5e-07, "1.5e-07"), (1e-4, "0.0001"), (10.00001, "10.00001"), (math.nan, "nan"),
     (-math.inf, "-inf"), (1e16, "1e+16"), (1e15, "1000000000000000.0"), (7.0, "7.0"), (-0.0, "-0.0")],
)
def test_values_orjson_prints_differently_are_written_as_repr(value: float, text: str) -> None:
    # Each of these sits among 1,000 ordinary values, so one chunk takes the slow way and the rest do not.
    points = [(1, 0.5, i) for i in range(1000)]
    points[700] = (1, value, 700)
    lines = format_metric_lines(points).split(b"\n")
    assert lines[700] == f"1 {text} 700".encode()
    assert lines[699] == b"1 0.5 699" and lines[1000] == b""


def test_no_points_is_no_bytes() -> None:
    assert format_metric_lines([]) == b""


@given(st.lists(st.lists(POINT, max_size=8), max_size=40))
def test_files_of_a_write_equal_mlflows_lines_each(files: list[list[tuple[int, float, int]]]) -> None:
    # One orjson call for every file of a write, split per file: nan, 1e-05 and ints past int64
    # in one file send that file the slow way and leave its neighbours' text alone.
    assert format_metric_files(files) == [mlflow_lines(points) for points in files]


def test_files_of_many_points_each_are_formatted_one_by_one() -> None:
    files = [[(1, i / 7, step) for step in range(2000)] for i in range(3)]
    files[1][1500] = (1, 1e-05, 1500)
    assert format_metric_files(files) == [mlflow_lines(points) for points in files]


def test_a_step_beyond_int64_in_one_file_keeps_every_file_exact() -> None:
    files = [[(1, 0.5, 1)], [(2, 0.25, 2**70)], [(3, 7.0, 3)]]
    assert format_metric_files(files) == [b"1 0.5 1\n", b"2 0.25 1180591620717411303424\n", b"3 7.0 3\n"]
