"""A store path under a regular file is refused where the client is made, as MLflow refuses it at start_run.

A review set ``/tmp/x/file.txt/mlruns`` (file.txt a file): ``start_run`` and every logging call
succeeded, and only ``flush()`` raised DeliveryError "[Errno 20] Not a directory". MLflow's
FileStore makes the root at start_run and raises there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fluent_helpers import fluent_env, run_child
from helpers import DaemonProcess

import trackd
from trackd import Client, ClientConfig, InvalidArgument

mlflow = pytest.importorskip("mlflow")


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "file.txt"
    path.write_text("not a folder\n")
    return path


def test_fluent_start_run_under_a_file_raises_naming_the_file(daemon: DaemonProcess, tmp_path: Path) -> None:
    file = _file(tmp_path)
    result = run_child(
        f"""
        import trackd
        trackd.set_tracking_uri({str(file / "mlruns")!r})
        try:
            trackd.start_run()
        except trackd.InvalidArgument as exc:
            print("refused:", exc)
        else:
            trackd.log_metric("loss", 0.5)
            trackd.flush()
            print("accepted")
        """,
        fluent_env(daemon, None),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"refused: Invalid store root {str(file / 'mlruns')!r}: {str(file)!r}, the part of it that exists, is a file"
    ), result.stdout


def test_mlflow_refuses_the_same_store_at_start_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The behaviour matched: MLflow's FileStore raises when start_run makes the store.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    file = _file(tmp_path)
    mlflow.set_tracking_uri(str(file / "mlruns"))
    try:
        with pytest.raises(NotADirectoryError):
            mlflow.start_run()
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("below", ["", "mlruns", "a/b/mlruns"])
def test_client_under_or_at_a_file_raises_at_creation(config: ClientConfig, tmp_path: Path, below: str) -> None:
    file = _file(tmp_path)
    root = file / below if below else file
    with pytest.raises(InvalidArgument, match="is a file") as refused:
        Client(root, config=config)
    message = str(refused.value)
    assert message.startswith(f"Invalid store root {str(root)!r}: ")
    assert (f"{str(file)!r}, the part of it that exists," in message) == bool(below)
    assert isinstance(refused.value, trackd.MlflowException)


def test_client_under_a_symbolic_link_to_nothing_raises(config: ClientConfig, tmp_path: Path) -> None:
    # A str, taken as given (a pathlib.Path is resolved, as MLflow's set_tracking_uri resolves it).
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    with pytest.raises(InvalidArgument, match="gone', the part of it that exists, is a symbolic link to nothing"):
        Client(str(tmp_path / "gone" / "mlruns"), config=config)


def test_a_store_still_to_be_made_under_folders_is_taken_and_written(config: ClientConfig, tmp_path: Path) -> None:
    store = tmp_path / "new" / "deeper" / "mlruns"
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.log_metric(run_id, "loss", 0.5)
        client.flush()
    assert mlflow.MlflowClient(str(store)).get_run(run_id).data.metrics == {"loss": 0.5}
