"""``log_artifact(s)`` of a path that does not exist raises what MLflow's raises (``FileNotFoundError``),
and still trackd's ``InvalidArgument``, at the call: ported code that catches either keeps working."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess

import trackd
from trackd import ArtifactNotFound, Client, ClientConfig, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture
def client(store: Path, daemon: DaemonProcess) -> Iterator[Client]:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        yield client


def _mlflow_error(tmp_path: Path, call: str, missing: Path) -> BaseException:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    run_id = theirs.create_run(theirs.create_experiment("e")).info.run_id
    with pytest.raises(Exception) as raised:
        getattr(theirs, call)(run_id, str(missing))
    return raised.value


def test_a_missing_file_raises_file_not_found_as_mlflow_and_invalid_argument(client: Client, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    assert isinstance(_mlflow_error(tmp_path, "log_artifact", missing), FileNotFoundError)
    _assert_not_found(client, "log_artifact", missing)


def test_a_missing_folder_raises_file_not_found(client: Client, tmp_path: Path) -> None:
    # MLflow's log_artifacts of a missing folder logs nothing and says nothing: a typo in a path
    # loses the artifacts silently. trackd raises, as log_artifact does.
    _assert_not_found(client, "log_artifacts", tmp_path / "no-such-folder")


def _assert_not_found(client: Client, call: str, missing: Path) -> None:
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    with pytest.raises(ArtifactNotFound) as raised:
        getattr(client, call)(run_id, missing)
    assert isinstance(raised.value, FileNotFoundError) and isinstance(raised.value, InvalidArgument)
    assert str(missing) in str(raised.value) and "does not exist" in str(raised.value)
    # As the OSError MLflow's copy raises, for code that reads errno; the message stays str().
    assert raised.value.errno == errno.ENOENT and str(raised.value).startswith("Artifact")
    assert trackd.ArtifactNotFound is ArtifactNotFound


def test_a_path_that_exists_but_is_no_file_or_folder_is_still_only_invalid(client: Client, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    with pytest.raises(InvalidArgument) as raised:
        client.log_artifact(run_id, fifo)
    assert not isinstance(raised.value, FileNotFoundError)
    assert "is not a file or directory" in str(raised.value)
