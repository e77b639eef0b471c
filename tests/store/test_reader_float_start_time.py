"""A run whose meta.yaml holds a float start_time, as MLflow's own create_run leaves one, is read as MLflow reads it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from trackd.errors import CorruptStoreFile
from trackd.store import StoreReader

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _store_with_a_float_start_time(root: Path) -> tuple[MlflowClient, str, str]:
    """A store where MLflow made a run with start_time=time.time() * 1000: its create_run writes
    meta.yaml (``start_time: 1795853478917.749``), then raises TypeError building the RunInfo."""
    client = MlflowClient(tracking_uri=str(root))
    experiment_id = client.create_experiment("floats")
    fine = client.create_run(experiment_id, start_time=1_700_000_000_000).info.run_id
    with contextlib.suppress(TypeError):
        client.create_run(experiment_id, start_time=time.time() * 1000, run_name="float start")  # type: ignore[arg-type]
    (float_run,) = [p.name for p in (root / experiment_id).iterdir() if len(p.name) == 32 and p.name != fine]
    assert "start_time: 1" in (root / experiment_id / float_run / "meta.yaml").read_text()
    return client, experiment_id, float_run


def test_search_runs_lists_a_run_with_a_float_start_time_as_mlflow_does(tmp_path: Path) -> None:
    # This used to raise CorruptStoreFile "expected an int" for the whole experiment.
    client, experiment_id, _ = _store_with_a_float_start_time(tmp_path)
    theirs = [(r.info.run_id, r.info.start_time) for r in client.search_runs([experiment_id])]
    ours = [(r.info.run_id, r.info.start_time) for r in StoreReader(tmp_path).search_runs([experiment_id])]
    assert ours == theirs
    assert [type(start) for _, start in ours] == [type(start) for _, start in theirs] == [float, int]


def test_get_run_gives_the_float_start_time_mlflow_gives(tmp_path: Path) -> None:
    client, _, float_run = _store_with_a_float_start_time(tmp_path)
    start = StoreReader(tmp_path).get_run(float_run).info.start_time
    assert type(start) is float and start == client.get_run(float_run).info.start_time


def test_a_start_time_that_is_no_number_is_still_corrupt(tmp_path: Path) -> None:
    _, experiment_id, float_run = _store_with_a_float_start_time(tmp_path)
    meta = tmp_path / experiment_id / float_run / "meta.yaml"
    meta.write_text("\n".join(
        "start_time: '12'" if line.startswith("start_time:") else line for line in meta.read_text().splitlines()
    ) + "\n")
    with pytest.raises(CorruptStoreFile, match="start_time: '12', expected a number of milliseconds"):
        StoreReader(tmp_path).get_run(float_run)
