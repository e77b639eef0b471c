"""``log_artifact(s)``' ``artifact_path`` is taken or refused as MLflow's file store takes or refuses it.

MLflow's local artifact repository refuses an artifact_path that normalizes to another name
(``verify_artifact_path``: "z/", "z//", "./z", "a/../z"); trackd logged "z/" under z/, so code
that ran on trackd raised once pointed at MLflow. MLflow runs in this process on a store of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd import Client, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    return folder


@pytest.mark.parametrize("call", ["log_artifact", "log_artifacts"])
@pytest.mark.parametrize("artifact_path", ["z/", "z//", "./z", "z/./", "a/../z"])
def test_an_artifact_path_that_normalizes_to_another_name_is_refused_in_mlflows_words(
    client: Client, tmp_path: Path, source: Path, call: str, artifact_path: str
) -> None:
    # This used to log the file under z/ (trackd stripped the trailing "/").
    local = source / "a.txt" if call == "log_artifact" else source
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run("0").info.run_id
    with pytest.raises(MlflowException) as their_error:
        getattr(theirs, call)(their_run, str(local), artifact_path)
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument) as our_error:
        getattr(client, call)(run_id, local, artifact_path)
    assert str(our_error.value) == their_error.value.message
    assert client.list_artifacts(run_id) == [] and theirs.list_artifacts(their_run) == []


@pytest.mark.parametrize("artifact_path", [None, "", "z", "z/y"])
def test_a_normalized_artifact_path_puts_the_file_where_mlflow_puts_it(
    client: Client, tmp_path: Path, source: Path, artifact_path: str | None
) -> None:
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run("0").info.run_id
    theirs.log_artifact(their_run, str(source / "a.txt"), artifact_path)
    run_id = client.create_run().info.run_id
    client.log_artifact(run_id, source / "a.txt", artifact_path)
    folder = artifact_path or None
    assert [f.path for f in client.list_artifacts(run_id, folder)] == [f.path for f in theirs.list_artifacts(their_run, folder)]
