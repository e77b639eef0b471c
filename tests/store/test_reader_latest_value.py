"""The latest value get_run and search_runs give is MLflow's: max by (step, timestamp, value), whatever the file holds.

latest_metric_value reads a file of plain ``ts value step`` lines without a Metric per point; these
compare it, over files of every shape, with MLflow's own get_run and with max() over
parse_metric_lines, which reads any file as MLflow does.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from trackd.errors import CorruptStoreFile
from trackd.store import StoreReader
from trackd.store._metric_lines import latest_metric_value, parse_metric_lines

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

# Tokens int() and float() read in more than one way ("+2", "02", "1_0", "٣" is 3), ties, NaNs.
TIMESTAMPS = ["1", "2", "2", "+2", "02", "1_0", "10", "-1", "٣"]
VALUES = ["0.5", "0.25", "nan", "NaN", "-nan", "inf", "-Infinity", "1e5", "1E5", "+.5", "2", "1_0.5", "-0.0", "0.0"]
STEPS = ["0", "1", "1", "+1", "01", "-1", "1_0", "3"]
# What turns a line into one the reader refuses, or reads another way.
DAMAGE = ["1.0", "abc", "0x1", "", "\t", "  "]
# After a line's step: 4 fields, or a space or tab strip() removes (not 5 fields, which MLflow reads
# as step 0 and trackd as the step written: docs/api.md, How it differs from MLflow).
ENDINGS = ["", " ", " x", "\t"]


def _line(rng: random.Random) -> str:
    ts, value, step = rng.choice(TIMESTAMPS), rng.choice(VALUES), rng.choice(STEPS)
    roll = rng.random()
    if roll < 0.04:
        return f"{ts} {value}"  # legacy: step 0
    if roll < 0.06:
        return f"{rng.choice(DAMAGE)} {value} {step}"
    if roll < 0.08:
        return f"{ts} {value} {step}{rng.choice(ENDINGS)}"
    if roll < 0.09:
        return f" {ts} {value}"
    return f"{ts} {value} {step}"


def _file(rng: random.Random) -> bytes:
    lines = [_line(rng) for _ in range(rng.randint(1, 6))]
    newline = "\r\n" if rng.random() < 0.05 else "\n"
    text = newline.join(lines) + ("" if rng.random() < 0.2 else newline)
    return text.encode("utf-8")


def _outcome(read: object) -> object:
    """What a read gave: the value (NaN as a str, so that equal outcomes compare equal), or "raised"."""
    try:
        value = read() if callable(read) else read
    except (CorruptStoreFile, ValueError, Exception):  # MLflow raises MlflowException or ValueError
        return "raised"
    assert isinstance(value, float)
    return "nan" if math.isnan(value) else value


def _reference(data: bytes) -> object:
    def read() -> float:
        points = parse_metric_lines("m", data, "m")
        if not points:
            raise CorruptStoreFile("empty")
        return max(points, key=lambda m: (m.step, m.timestamp, m.value)).value
    return _outcome(read)


@pytest.mark.parametrize("seed", range(4))
def test_latest_value_is_mlflows_over_files_of_every_shape(tmp_path: Path, seed: int) -> None:
    client = MlflowClient(tracking_uri=str(tmp_path))
    run = client.create_run(client.create_experiment("e")).info
    path = tmp_path / run.experiment_id / run.run_id / "metrics" / "m"
    reader = StoreReader(tmp_path)
    rng = random.Random(seed)
    for _ in range(150):
        data = _file(rng)
        path.write_bytes(data)
        theirs = _outcome(lambda: client.get_run(run.run_id).data.metrics["m"])
        ours = _outcome(lambda: reader.get_run(run.run_id).data.metrics["m"])
        assert ours == theirs == _reference(data), data


@pytest.mark.parametrize(
    "data",
    [
        b"1 0.5 3\n2 0.25 3\n2 0.75 3\n2 0.1 2\n",  # the highest value of the latest step and time
        b"1 nan 3\n1 0.5 3\n",  # a NaN and a number: neither is greater, the first stays
        b"1 0.5 3\n1 nan 3\n",
        b"1 nan 3\n1 nan 3\n",
        b"5 0.9 1\n9 0.1 3\n7 0.5 3\n9 0.2 3\n1 0.7 2",  # no final newline
        b"1 0.5 3 eval abc\n2 0.25 1\n",  # dataset fields: trackd reads the step, MLflow reads 0
        b"1 0.5 0\r\n2 0.25 1\r\n",
        b"10000000000000000000000 0.5 1\n1 0.25 99999999999999999999999\n",
    ],
)
def test_latest_value_is_max_of_step_timestamp_value_over_parsed_points(data: bytes) -> None:
    assert _outcome(lambda: latest_metric_value("m", data, "m")) == _reference(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"1 0.5 0\n17000", "line 2 is malformed: found 1 space-separated fields"),
        (b"1 0.5 1.0\n", "line 1 is malformed: found '1 0.5 1.0'"),
        (b"1 0.5 0\n\n2 0.5 1\n", "line 2 is malformed"),
        (b"1  0.5 0\n", "found 4 space-separated fields"),
    ],
)
def test_a_file_the_reader_refuses_raises_as_before(data: bytes, message: str) -> None:
    with pytest.raises(CorruptStoreFile, match=message):
        latest_metric_value("m", data, "m")
