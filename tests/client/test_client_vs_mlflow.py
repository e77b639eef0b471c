"""``trackd.Client``'s reads return what ``mlflow.MlflowClient`` returns on the same store.

A real daemon writes the store through a trackd Client; real MLflow reads it back, and its
answers are the expected values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess

from trackd import Client, ClientConfig, FileInfo, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

T0 = 1_700_000_000_000


@pytest.fixture
def client(store: Path, daemon: DaemonProcess) -> Iterator[Client]:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        yield client


def _runs_in_order(client: Client, count: int) -> tuple[str, list[str]]:
    """An experiment with ``count`` runs started a millisecond apart, and their ids."""
    experiment_id = client.create_experiment("exp")
    return experiment_id, [client.create_run(experiment_id, start_time=T0 + i).info.run_id for i in range(count)]


# -- run status -----------------------------------------------------------------------------------


def test_run_status_is_mlflows_string_in_get_run_and_search_runs(client: Client, store: Path) -> None:
    # This used to be an IntEnum: `status == "FINISHED"` was False and it printed as 3.
    experiment_id, (running, finished) = _runs_in_order(client, 2)
    client.set_terminated(finished, 3)
    ours = {r.info.run_id: r.info.status for r in client.search_runs(experiment_id)}
    theirs = {r.info.run_id: r.info.status for r in MlflowClient(str(store)).search_runs([experiment_id])}
    assert ours == theirs == {running: "RUNNING", finished: "FINISHED"}
    status = client.get_run(finished).info.status
    assert type(status) is str and f"{status}" == "FINISHED"
    # meta.yaml keeps MLflow's int.
    assert "\nstatus: 3\n" in (store / experiment_id / finished / "meta.yaml").read_text()


# -- list_artifacts -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, "", ".", "cfg", "cfg/", "./cfg", "cfg/sub", "a.txt", "missing", "empty"])
def test_list_artifacts_returns_what_mlflow_returns(client: Client, store: Path, path: str | None) -> None:
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "hello", "cfg/config.json")
    client.log_text(run_id, "x" * 1000, "cfg/sub/deep.txt")
    client.log_text(run_id, "", "a.txt")
    client.flush()
    (store / "0" / run_id / "artifacts" / "empty").mkdir()
    theirs = MlflowClient(str(store)).list_artifacts(run_id, path)
    ours = client.list_artifacts(run_id, path)
    assert [(f.path, f.is_dir, f.file_size) for f in ours] == [(f.path, f.is_dir, f.file_size) for f in theirs]
    assert all(type(f) is FileInfo for f in ours)


def test_list_artifacts_is_one_level_deep_with_sizes_and_no_size_for_folders(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "hello", "cfg/config.json")
    client.log_text(run_id, "abc", "a.txt")
    assert client.list_artifacts(run_id) == [FileInfo("a.txt", False, 3), FileInfo("cfg", True, None)]
    assert client.list_artifacts(run_id, "cfg") == [FileInfo("cfg/config.json", False, 5)]


def test_list_artifacts_refuses_a_path_outside_the_artifact_root(client: Client) -> None:
    # MLflow raises "Invalid path: resolved path is outside the artifact directory".
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match="no '..'"):
        client.list_artifacts(run_id, "../..")
