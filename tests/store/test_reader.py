"""StoreReader: tolerant exactly where MLflow's FileStore is, CorruptStoreFile with path and line elsewhere."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from store_helpers import RUN_ID, START_MS, writer_with_run

from trackd.errors import CorruptStoreFile, ExperimentNotFound, RunNotFound
from trackd.store import Metric, StoreReader


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"1 0.5\n", [(1, 0.5, 0)]),  # 2 fields (legacy): step 0
        (b"1 0.5 3\n", [(1, 0.5, 3)]),
        (b"1 0.5 3 ds digest\n", [(1, 0.5, 3)]),  # 5 fields: dataset name and digest
        (b"1 0.5 3\r\n2 0.25 4\r\n", [(1, 0.5, 3), (2, 0.25, 4)]),  # CRLF
        (b"1 0.5 3\n2 0.25 4", [(1, 0.5, 3), (2, 0.25, 4)]),  # no final newline
        (b"1 NaN 0\n2 Infinity 1\n3 -inf 2\n4 1E5 3\n", [(1, math.nan, 0), (2, math.inf, 1), (3, -math.inf, 2), (4, 1e5, 3)]),
        (b"", []),
    ],
)
def test_metric_history_accepts_what_mlflow_accepts(
    tmp_path: Path, content: bytes, expected: list[tuple[int, float, int]]
) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "metrics" / "m").write_bytes(content)
    history = StoreReader(tmp_path).get_metric_history(RUN_ID, "m")
    assert [(m.timestamp, m.step) for m in history] == [(ts, step) for ts, _, step in expected]
    for metric, (_, value, _) in zip(history, expected):
        assert metric.value == value or (math.isnan(value) and math.isnan(metric.value))


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        (b"1 0.5 0\n17000", 2, "found 1 space-separated fields"),
        (b"1 0.5 0\n\n", 2, "found 1 space-separated fields"),
        (b"1  0.5 0\n", 1, "found 4 space-separated fields"),
        (b"1\t0.5\t0\n", 1, "found 1 space-separated fields"),
        (b"1 0.5 0 x\n", 1, "found 4 space-separated fields"),
        (b"1 0.5 1.0\n", 1, "expected an int timestamp"),
        (b"1.7e12 0.5 1\n", 1, "expected an int timestamp"),
        (b"1 abc 1\n", 1, "'1 abc 1'"),
    ],
)
def test_malformed_metric_line_names_path_and_line(tmp_path: Path, content: bytes, line: int, found: str) -> None:
    _, run = writer_with_run(tmp_path)
    path = run / "metrics" / "m"
    path.write_bytes(content)
    with pytest.raises(CorruptStoreFile) as info:
        StoreReader(tmp_path).get_metric_history(RUN_ID, "m")
    assert f"{str(path)!r} line {line}" in str(info.value)
    assert found in str(info.value)


def test_latest_metric_value_is_mlflows_max_of_step_timestamp_value(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "metrics" / "m").write_bytes(b"5 0.9 1\n9 0.1 3\n7 0.5 3\n9 0.2 3\n1 0.7 2\n")
    assert StoreReader(tmp_path).get_run(RUN_ID).data.metrics == {"m": 0.2}


def test_empty_metric_file_breaks_get_run_but_not_history(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "metrics" / "m").write_bytes(b"")
    reader = StoreReader(tmp_path)
    assert reader.get_metric_history(RUN_ID, "m") == []
    with pytest.raises(CorruptStoreFile, match="is empty"):
        reader.get_run(RUN_ID)


def test_param_that_is_not_utf8_is_corrupt(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "params" / "p").write_bytes(b"\xff")
    with pytest.raises(CorruptStoreFile, match="not valid UTF-8"):
        StoreReader(tmp_path).get_run(RUN_ID)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("status: FINISHED\n", "expected an int from 1 to 5"),
        ("{broken: [\n", "is not valid YAML"),
        ("- a list\n", "expected a YAML mapping"),
    ],
)
def test_corrupt_run_meta_is_reported_with_its_path(tmp_path: Path, meta: str, message: str) -> None:
    _, run = writer_with_run(tmp_path)
    original = (run / "meta.yaml").read_text()
    (run / "meta.yaml").write_text(original.replace("status: 1\n", meta) if "status" in meta else meta)
    with pytest.raises(CorruptStoreFile, match=message) as info:
        StoreReader(tmp_path).get_run(RUN_ID)
    assert str(run / "meta.yaml") in str(info.value)


def test_run_meta_without_end_time_is_corrupt(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "meta.yaml").write_text((run / "meta.yaml").read_text().replace("end_time: null\n", ""))
    with pytest.raises(CorruptStoreFile, match="has no 'end_time' key"):
        StoreReader(tmp_path).get_run(RUN_ID)


def test_mlflow_1x_run_meta_is_read(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    experiment_id = run.parent.name
    # int experiment_id, no run_name, no status, no lifecycle_stage, an unknown key.
    (run / "meta.yaml").write_text(
        f"experiment_id: {experiment_id}\nrun_id: {RUN_ID}\nuser_id: bob\nstart_time: {START_MS}\n"
        "end_time: null\nartifact_uri: ''\nsomething_new: 1\n"
    )
    info = StoreReader(tmp_path).get_run(RUN_ID).info
    assert (info.experiment_id, info.run_name, info.status, info.lifecycle_stage) == (
        experiment_id, "run-a", "RUNNING", "active"
    )


def test_search_runs_skips_what_mlflow_skips_and_sorts_by_start_time(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    experiment_folder = run.parent
    (experiment_folder / "stray").mkdir()  # no meta.yaml: skipped
    (experiment_folder / "datasets").mkdir()  # reserved
    other = experiment_folder / ("c" * 32)
    other.mkdir()
    (other / "meta.yaml").write_text((run / "meta.yaml").read_text().replace(RUN_ID, "c" * 32).replace(
        f"experiment_id: '{experiment_folder.name}'", "experiment_id: '999'"
    ))  # recorded under another experiment: skipped
    runs = StoreReader(tmp_path).search_runs([experiment_folder.name])
    assert [r.info.run_id for r in runs] == [RUN_ID]


def test_missing_run_and_experiment_raise_lookup_errors(tmp_path: Path) -> None:
    writer_with_run(tmp_path)
    reader = StoreReader(tmp_path)
    assert reader.find_run("f" * 32) is None
    with pytest.raises(RunNotFound, match="f" * 32):
        reader.get_run("f" * 32)
    with pytest.raises(ExperimentNotFound, match="12345"):
        reader.get_experiment("12345")
    assert reader.get_experiment_by_name("nope") is None


def test_experiment_with_missing_meta_or_wrong_id_is_skipped(tmp_path: Path) -> None:
    writer_with_run(tmp_path)
    (tmp_path / "77").mkdir()
    (tmp_path / "78").mkdir()
    (tmp_path / "78" / "meta.yaml").write_text(
        "artifact_location: x\nexperiment_id: '79'\nlifecycle_stage: active\nname: w\n"
    )
    assert sorted(e.name for e in StoreReader(tmp_path).list_experiments()) == ["Default", "exp"]


def test_history_of_a_metric_never_logged_is_empty(tmp_path: Path) -> None:
    writer_with_run(tmp_path)
    assert StoreReader(tmp_path).get_metric_history(RUN_ID, "never") == []


def test_metric_history_keeps_file_order_and_repeats(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    (run / "metrics" / "m").write_bytes(b"3 0.1 2\n1 0.5 0\n1 0.5 0\n")
    # Each names its run, as MLflow 3's FileStore sets run_id.
    assert StoreReader(tmp_path).get_metric_history(RUN_ID, "m") == [
        Metric("m", 0.1, 3, 2, run_id=RUN_ID), Metric("m", 0.5, 1, 0, run_id=RUN_ID), Metric("m", 0.5, 1, 0, run_id=RUN_ID)
    ]


@pytest.mark.parametrize(
    "location",
    [
        None,  # the store's own folder, as a file:// URI
        "/data/artifacts-of/exp",
        "file:///data/a%20b/exp",
        "/data/with space/exp",
        "/data/caf\u00e9/exp",
        "s3://bucket/prefix",
        "/data/it's/exp",
        "/data/" + "x" * 300,
    ],
)
def test_artifact_location_without_yaml_is_what_yaml_reads(tmp_path: Path, location: str | None) -> None:
    from trackd.store import StoreWriter

    writer = StoreWriter(tmp_path / "mlruns")
    experiment_id = writer.create_experiment("exp", artifact_location=location, now_ms=START_MS)
    writer.close()
    reader = StoreReader(tmp_path / "mlruns")
    assert reader.artifact_location_for_new_run(experiment_id) == reader.get_experiment(experiment_id).artifact_location
    assert reader.artifact_location_for_new_run("0") == reader.get_experiment("0").artifact_location
    with pytest.raises(ExperimentNotFound):
        reader.artifact_location_for_new_run("123")
