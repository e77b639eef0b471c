"""``log_text`` and ``log_dict`` take ``artifact_file`` as MLflow does: a str or a path, normalized.

MLflow's ``_log_artifact_helper`` runs ``posixpath.normpath`` on it, so a script ported from MLflow
that writes ``log_text(summary, "./summary.txt")`` or ``log_dict(cfg, out / "cfg.yaml")`` logs
the file; each name below was checked against mlflow 3.17.2, which stores it under the same path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import DaemonProcess

import trackd
from trackd import InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _load_text(store: Path, run_id: str, path: str) -> str:
    """The artifact as MLflow reads it (by the run's artifact URI: no tracking URI to set globally)."""
    artifact_uri = MlflowClient(str(store)).get_run(run_id).info.artifact_uri
    text: str = mlflow.artifacts.load_text(f"{artifact_uri}/{path}")
    return text


@pytest.mark.parametrize(
    ("artifact_file", "stored_as"),
    [
        ("./summary.txt", "summary.txt"),
        ("plots//loss.txt", "plots/loss.txt"),
        ("plots/./acc.txt", "plots/acc.txt"),
        ("plots/../top.txt", "top.txt"),
        ("folder/", "folder"),
        (Path("reports") / "eval.txt", "reports/eval.txt"),
    ],
)
def test_log_text_stores_the_normalized_name_mlflow_stores(
    artifact_file: str | os.PathLike[str], stored_as: str, daemon: DaemonProcess, store: Path
) -> None:
    # This used to raise InvalidArgument ("expected a normalized relative POSIX path") for each str,
    # and for a Path "expected a non-empty str".
    with trackd.Client(store) as client:
        run_id = client.create_run("0").info.run_id
        client.log_text(run_id, "text", artifact_file)
        client.flush()
    assert _load_text(store, run_id, stored_as) == "text"
    top = stored_as.split("/")[0]
    assert [info.path for info in MlflowClient(str(store)).list_artifacts(run_id)] == [top]


@pytest.mark.parametrize(("artifact_file", "stored_as"), [(Path("cfg") / "c.yaml", "cfg/c.yaml"), ("./cfg/c.json", "cfg/c.json")])
def test_log_dict_takes_a_path_and_a_dot_slash_name(
    artifact_file: str | os.PathLike[str], stored_as: str, daemon: DaemonProcess, store: Path
) -> None:
    # A Path raised AttributeError ('PosixPath' object has no attribute 'endswith') from inside trackd.
    with trackd.Client(store) as client:
        run_id = client.create_run("0").info.run_id
        client.log_dict(run_id, {"lr": 0.1}, artifact_file)
        client.flush()
    text = _load_text(store, run_id, stored_as)
    assert text == ("lr: 0.1\n" if stored_as.endswith(".yaml") else '{\n  "lr": 0.1\n}')


@pytest.mark.parametrize("artifact_file", ["../x.txt", "a/../../x.txt", "/abs.txt", "//abs.txt", ".", ""])
def test_a_name_outside_the_run_after_normalizing_is_still_refused(artifact_file: str, daemon: DaemonProcess, store: Path) -> None:
    with trackd.Client(store) as client:
        run_id = client.create_run("0").info.run_id
        with pytest.raises(InvalidArgument):
            client.log_text(run_id, "text", artifact_file)
        client.flush()
    assert MlflowClient(str(store)).list_artifacts(run_id) == []
