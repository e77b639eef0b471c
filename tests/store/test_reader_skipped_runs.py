"""search_runs skips a run folder whose meta.yaml names another experiment or run id, with one warning naming it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from trackd.errors import CorruptStoreFile, RunNotFound
from trackd.store import StoreReader

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _skip_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trackd.store" and r.levelno == logging.WARNING]


def test_a_run_folder_copied_into_another_experiment_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient(tracking_uri=str(tmp_path))
    first, second = client.create_experiment("a"), client.create_experiment("b")
    run_id = client.create_run(first).info.run_id
    shutil.copytree(tmp_path / first / run_id, tmp_path / second / run_id)
    assert client.search_runs([second]) == []  # MLflow logs "Wrong experiment ID ... Run will be ignored."
    # This used to skip it without a word.
    assert StoreReader(tmp_path).search_runs([second]) == []
    (message,) = _skip_warnings(caplog)
    assert repr(str(tmp_path / second / run_id)) in message
    assert f"records experiment {first}, expected {second}" in message
    assert [r.info.run_id for r in StoreReader(tmp_path).search_runs([first])] == [run_id]


def test_a_run_folder_renamed_is_skipped_with_a_warning_where_mlflow_fails_the_search(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient(tracking_uri=str(tmp_path))
    experiment_id = client.create_experiment("a")
    kept = client.create_run(experiment_id).info.run_id
    renamed = client.create_run(experiment_id).info.run_id
    folder = tmp_path / experiment_id / ("a" * 32)
    (tmp_path / experiment_id / renamed).rename(folder)
    with pytest.raises(Exception, match="Invalid parent directory"):
        client.search_runs([experiment_id])
    reader = StoreReader(tmp_path)
    # This used to list it under the id its meta.yaml records, which get_run did not find.
    assert [r.info.run_id for r in reader.search_runs([experiment_id])] == [kept]
    (message,) = _skip_warnings(caplog)
    assert repr(str(folder)) in message and f"records run id {renamed}, expected {'a' * 32}" in message
    with pytest.raises(RunNotFound):
        reader.get_run(renamed)
    with pytest.raises(CorruptStoreFile, match=f"records run {renamed}"):
        reader.get_run("a" * 32)


def test_a_folder_without_meta_yaml_is_skipped_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = MlflowClient(tracking_uri=str(tmp_path))
    experiment_id = client.create_experiment("a")
    (tmp_path / experiment_id / "not-a-run").mkdir()
    assert client.search_runs([experiment_id]) == []
    assert StoreReader(tmp_path).search_runs([experiment_id]) == []
    assert _skip_warnings(caplog) == []
