"""Metric lines: the fast formatter writes exactly the text MLflow's ``str(float)`` writes."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trackd.store._format import _load_flat_yaml, dump_yaml, load_yaml
from trackd.store._metric_lines import format_metric_files, format_metric_lines

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


# -- meta.yaml without PyYAML -------------------------------------------------------------------------

TRICKY_VALUES = [
    "Default", "clever-hare-703", "file:///tmp/mlruns/0", "/abs/path", "", " padded ", "it's", "''", "yes", "No",
    "TRUE", "off", "null", "Null", "~", "1e3", "0x10", "1_000", "12", "-7", "007", ".inf", "2024-01-01", "1:20",
    "a: b", "a #b", "#x", "- item", "[x]", "{x}", "*ref", "&anchor", "!tag", "%x", "@x", "`x`", "a\nb", "é", "модель",
    "x" * 200, "a,b", "a'b", 'a"b', "tab\there", "?", ":", "=", "0b101", "0b", "00025e8a07eb4674", "0e1",
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_meta_yaml_read_without_pyyaml_equals_pyyaml_or_defers_to_it(tmp_path: Path, value: str) -> None:
    # The fast path must never read a file differently from PyYAML: where it is not sure, it says so.
    import yaml

    meta = {"name": value, "experiment_id": "123", "creation_time": 1700000000000, "trace_location": None, "tags": []}
    data = dump_yaml(meta)
    flat = _load_flat_yaml(data)
    assert flat is None or flat == yaml.safe_load(data)
    path = tmp_path / "meta.yaml"
    path.write_bytes(data)
    assert load_yaml(str(path)) == meta


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.one_of(st.none(), st.integers(), st.text(), st.booleans(), st.floats(allow_nan=False)), max_size=8))
def test_flat_meta_yaml_agrees_with_pyyaml_on_whatever_it_reads(meta: dict[str, object]) -> None:
    import yaml

    data = dump_yaml(meta)
    flat = _load_flat_yaml(data)
    assert flat is None or flat == yaml.safe_load(data)


@pytest.mark.parametrize(
    "text",
    ["yes: 1\n", "null: a\n", "on: x\n", "a: 'x\ry'\n", "a: 'x\x85y'\n", "a: 'x\u2028y'\n", "a: abc:\n", "a: /x:\n",
     "a: 'x\x01y'\n", "a: 'x\x7fy'\n", "a: x\tb\n"],
)
def test_flat_meta_yaml_leaves_to_pyyaml_what_pyyaml_reads_differently_or_refuses(text: str) -> None:
    # A second reviewer's counterexamples: each was read here while PyYAML gives another value
    # (a key True or None, a folded line break) or an error.
    assert _load_flat_yaml(text.encode("utf-8")) is None


def test_the_meta_yaml_files_trackd_writes_read_without_pyyaml(tmp_path: Path) -> None:
    run_meta: dict[str, object] = {
        "artifact_uri": "file:///tmp/mlruns/1/abc/artifacts", "end_time": None, "entry_point_name": "",
        "experiment_id": "559532333191673372", "lifecycle_stage": "active", "run_id": "a" * 32, "run_name": "clever-hare-703",
        "run_uuid": "a" * 32, "source_name": "", "source_type": 4, "source_version": "", "start_time": 1795720756768,
        "status": 1, "tags": [], "user_id": "root",
    }
    assert _load_flat_yaml(dump_yaml(run_meta)) == run_meta


@pytest.mark.parametrize("run_id", ["00025e8a07eb4674b681115d0f77b557", "9" * 31 + "f", "1e30000000000000000000000000000b"])
def test_the_meta_yaml_of_a_run_whose_id_starts_with_a_digit_reads_without_pyyaml(run_id: str) -> None:
    # A uuid4().hex starts with a digit 10 times in 16: those runs' meta.yaml went to PyYAML, a
    # fifth of search_runs over a sweep's 2,000 runs, and a start_run(run_id=...) imported it.
    run_meta: dict[str, object] = {
        "artifact_uri": f"file:///tmp/mlruns/1/{run_id}/artifacts", "end_time": 1795720756999, "experiment_id": "1",
        "lifecycle_stage": "active", "run_id": run_id, "run_name": "trial-7", "run_uuid": run_id, "status": 3, "tags": [],
    }
    assert _load_flat_yaml(dump_yaml(run_meta)) == run_meta


@given(st.from_regex(r"[0-9a-fbx_.e+-]{1,34}", fullmatch=True))
def test_flat_meta_yaml_reads_hex_like_values_as_pyyaml_does(value: str) -> None:
    import yaml

    for data in (dump_yaml({"run_id": value}), f"run_id: {value}\n".encode()):
        flat = _load_flat_yaml(data)
        assert flat is None or flat == yaml.safe_load(data), data
