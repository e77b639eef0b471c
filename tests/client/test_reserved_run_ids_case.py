"""A run an older trackd made with a reserved name in another case ("Models") is read, as MLflow reads it.

Run ids naming an experiment's own folders (tags, traces, datasets, models) are refused for new
runs, in any case: on macOS's case-insensitive filesystem "Models" is the models folder. But the
check was made wherever a run id was taken, reads too, so on Linux a run folder "Models" made
before it, which search_runs lists and MLflow's get_run reads (its folder filter is exact), raised
InvalidArgument at get_run('Models'). Reads now take any id as MLflow's do, and such a run can be
logged to and attached to; get_run('tags') finds no run there, as MLflow's does.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fluent_helpers import mlflow_reader
from helpers import DaemonProcess, store_client

from trackd.errors import InvalidArgument, RunNotFound
from trackd.store import StoreReader


def _run_named_models(store: Path, socket_path: Path) -> Path:
    """A run folder "Models" in experiment 0, as a trackd without the check made it for start_run(run_id="Models")."""
    with store_client(store, socket_path) as client:
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "loss", 0.5, step=0)
        client.flush(timeout=30)
    folder = store / "0" / "Models"
    (store / "0" / run_id).rename(folder)
    meta = folder / "meta.yaml"
    meta.write_text(meta.read_text().replace(run_id, "Models"))
    return folder


def test_a_run_folder_models_is_read_logged_to_and_attached_to(daemon: DaemonProcess, store: Path) -> None:
    _run_named_models(store, daemon.paths.socket)
    reader = StoreReader(store)
    # This used to raise InvalidArgument "Invalid run id 'Models': MLflow's file store keeps folders ...".
    assert reader.get_run("Models").data.metrics == {"loss": 0.5}
    assert [r.info.run_id for r in reader.search_runs(["0"])] == ["Models"]
    with store_client(store, daemon.paths.socket) as client:
        assert client.create_run("0", run_id="Models").info.run_id == "Models"  # attached
        client.log_metric("Models", "loss", 0.25, step=1)
        client.flush(timeout=30)
    assert [m.value for m in mlflow_reader(store).get_metric_history("Models", "loss")] == [0.5, 0.25]


def test_a_new_run_of_a_reserved_name_in_any_case_is_still_refused(daemon: DaemonProcess, store: Path) -> None:
    with store_client(store, daemon.paths.socket) as client:
        for run_id in ("Models", "tags"):
            with pytest.raises(InvalidArgument, match=f"Invalid run id '{run_id}'"):
                client.create_run("0", run_id=run_id)
        client.create_run("0", run_id=uuid.uuid4().hex)
        client.flush(timeout=30)
    assert not (store / "0" / "Models").exists() and not (store / "0" / "tags").exists()


def test_get_run_of_an_experiment_folder_name_finds_no_run_as_in_mlflow(daemon: DaemonProcess, store: Path) -> None:
    with store_client(store, daemon.paths.socket) as client:
        experiment_id = client.create_experiment("e", tags={"team": "vision"})
    assert (store / experiment_id / "tags").is_dir()
    with pytest.raises(RunNotFound, match="Run 'tags' not found"):
        StoreReader(store).get_run("tags")
    with pytest.raises(Exception, match="Run 'tags' not found"):
        mlflow_reader(store).get_run("tags")
