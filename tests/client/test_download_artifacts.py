"""``Client.download_artifacts`` and ``trackd.artifacts.download_artifacts`` answer as MLflow's do on the same store.

Evaluation scripts ported from MLflow call ``MlflowClient().download_artifacts(run_id, path,
dst_path)`` or ``mlflow.artifacts.download_artifacts(...)``; trackd had neither. Real MLflow
downloads from the store a real daemon wrote, and its return values are the expected ones.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlflow.artifacts
import pytest
from fluent_helpers import fluent_env, quiet_result, run_child
from helpers import DaemonProcess
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import trackd
from trackd import ArtifactNotFound, Client, InvalidArgument
from trackd.errors import RunNotFound


def _logged_run(client: Client, store: Path) -> str:
    """A run with a.txt, cfg/c.json, cfg/sub/d.txt and an empty folder, all in the store."""
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "a", "a.txt")
    client.log_text(run_id, "{}", "cfg/c.json")
    client.log_text(run_id, "d", "cfg/sub/d.txt")
    client.flush()
    (store / "0" / run_id / "artifacts" / "empty").mkdir()
    return run_id


def _shape(path: str, artifacts: Path, who: str = "") -> tuple[str, object]:
    """The returned path with its new temporary folder, the store and ``who``'s folder named, and what it holds."""
    shown = path.replace(str(artifacts), "<store>").replace(f"/{who}/", "/<dst>/")
    shown = re.sub(re.escape(tempfile.gettempdir()) + r"/tmp[^/]+", "<new>", shown)
    if os.path.isdir(path):
        return shown, sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))
    return shown, Path(path).read_text()


@pytest.mark.parametrize("path", ["a.txt", "cfg", "cfg/", "./cfg", "cfg/sub/d.txt", ".", "", None, "empty"])
def test_download_returns_what_mlflow_returns(client: Client, store: Path, path: str | None) -> None:
    run_id = _logged_run(client, store)
    artifacts = store / "0" / run_id / "artifacts"
    ours = client.download_artifacts(run_id, path)  # type: ignore[arg-type]
    theirs = MlflowClient(str(store)).download_artifacts(run_id, path)  # type: ignore[arg-type]
    assert _shape(ours, artifacts) == _shape(theirs, artifacts)
    if path in ("", None):
        assert ours == str(artifacts)  # MLflow gives the store's own folder, not a copy
    else:
        assert ours.startswith(tempfile.gettempdir()) and not ours.startswith(str(store))


@pytest.mark.parametrize("path", ["a.txt", "cfg", "cfg/sub/d.txt", ""])
@pytest.mark.parametrize("dst", ["existing", "missing/nested", "relative"])
def test_download_into_dst_path_returns_what_mlflow_returns(
    client: Client, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, dst: str
) -> None:
    run_id = _logged_run(client, store)
    monkeypatch.chdir(tmp_path)
    shapes = []
    for who, download in (("ours", client.download_artifacts), ("theirs", MlflowClient(str(store)).download_artifacts)):
        where = f"{who}/{dst}" if dst == "relative" else str(tmp_path / who / dst)
        if dst == "existing":
            os.makedirs(where)
        out = download(run_id, path, where)
        assert os.path.isabs(out)
        shapes.append(_shape(out, store, who))
    assert shapes[0] == shapes[1]


def test_download_merges_into_an_existing_folder_as_mlflow_does(client: Client, store: Path, tmp_path: Path) -> None:
    run_id = _logged_run(client, store)
    for who, download in (("ours", client.download_artifacts), ("theirs", MlflowClient(str(store)).download_artifacts)):
        (tmp_path / who / "cfg").mkdir(parents=True)
        (tmp_path / who / "cfg" / "c.json").write_text("old")
        (tmp_path / who / "cfg" / "kept.txt").write_text("kept")
        download(run_id, "cfg", str(tmp_path / who))
    assert (tmp_path / "ours" / "cfg" / "c.json").read_text() == (tmp_path / "theirs" / "cfg" / "c.json").read_text() == "{}"
    assert (tmp_path / "ours" / "cfg" / "kept.txt").read_text() == "kept"


def test_download_flushes_what_this_process_logged_first(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "written just now", "notes/eval.txt")
    # No flush(): the read flushes, as get_run and list_artifacts do.
    assert Path(client.download_artifacts(run_id, "notes/eval.txt")).read_text() == "written just now"


@pytest.mark.parametrize("path", ["missing", "cfg/missing.txt"])
def test_a_missing_path_raises_artifact_not_found_where_mlflow_raises_resource_does_not_exist(client: Client, store: Path, path: str) -> None:
    run_id = _logged_run(client, store)
    with pytest.raises(MlflowException) as theirs:
        MlflowClient(str(store)).download_artifacts(run_id, path)
    with pytest.raises(ArtifactNotFound, match=f"Artifact '{path}' of run {run_id} does not exist") as ours:
        client.download_artifacts(run_id, path)
    assert isinstance(ours.value, FileNotFoundError)
    assert ours.value.error_code == theirs.value.error_code == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(("path", "error"), [("../meta.yaml", InvalidArgument), ("/etc/passwd", InvalidArgument)])
def test_a_path_outside_the_artifact_root_is_refused(client: Client, store: Path, path: str, error: type[Exception]) -> None:
    run_id = _logged_run(client, store)
    with pytest.raises(error):
        client.download_artifacts(run_id, path)


def test_an_unknown_run_raises_run_not_found(client: Client) -> None:
    with pytest.raises(RunNotFound, match="0" * 32):
        client.download_artifacts("0" * 32, "a.txt")


# -- trackd.artifacts.download_artifacts ----------------------------------------------------------


def _module_forms(run_id: str, artifacts: Path) -> list[dict[str, str]]:
    return [
        {"run_id": run_id},
        {"run_id": run_id, "artifact_path": "cfg"},
        {"run_id": run_id, "artifact_path": "cfg/sub/d.txt"},
        {"artifact_uri": f"runs:/{run_id}/cfg"},
        {"artifact_uri": f"runs:/{run_id}/"},
        {"artifact_uri": f"runs:/{run_id}/cfg/sub/d.txt"},
        {"artifact_uri": str(artifacts / "cfg")},
        {"artifact_uri": artifacts.joinpath("a.txt").as_uri()},
    ]


@pytest.mark.parametrize("form", range(8))
@pytest.mark.parametrize("dst", [None, "dst"])
def test_module_download_artifacts_returns_what_mlflows_returns(
    client: Client, store: Path, tmp_path: Path, form: int, dst: str | None
) -> None:
    run_id = _logged_run(client, store)
    artifacts = store / "0" / run_id / "artifacts"
    kwargs = _module_forms(run_id, artifacts)[form]
    shapes = []
    download: Callable[..., str]
    for who, download in (("ours", trackd.artifacts.download_artifacts), ("theirs", mlflow.artifacts.download_artifacts)):
        where = None if dst is None else str(tmp_path / who / dst)
        out = download(**kwargs, dst_path=where, tracking_uri=str(store))
        shapes.append(_shape(out, artifacts, who))
    assert shapes[0] == shapes[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Exactly one of `run_id` or `artifact_uri` must be specified"),
        ({"run_id": "0" * 32, "artifact_uri": "runs:/x/y"}, "Exactly one of `run_id` or `artifact_uri` must be specified"),
        ({"artifact_uri": "runs:/x/y", "artifact_path": "y"}, "`artifact_path` cannot be specified if `artifact_uri` is specified"),
    ],
)
def test_module_download_artifacts_refuses_what_mlflows_refuses_in_its_words(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(MlflowException, match=re.escape(message)):
        mlflow.artifacts.download_artifacts(**kwargs)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        trackd.artifacts.download_artifacts(**kwargs)


@pytest.mark.parametrize("uri", ["models:/my_model/1", "s3://bucket/key", "runs:/0123"])
def test_module_download_artifacts_refuses_uris_it_does_not_read(uri: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(uri)):
        trackd.artifacts.download_artifacts(artifact_uri=uri)


def test_ported_evaluation_script_downloads_what_its_training_logged(daemon: DaemonProcess, store: Path) -> None:
    # `import trackd as mlflow`, default tracking URI, no flush between logging and downloading;
    # `import trackd` loads trackd.artifacts only when the script uses it.
    result = run_child(
        """
        import json, sys
        import trackd as mlflow
        before = "trackd.artifacts" in sys.modules
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
            local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model")
            uri = mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run.info.run_id}/model/weights.txt")
            print(json.dumps({"before": before, "local": open(local + "/weights.txt").read(), "uri": open(uri).read()}))
        """,
        fluent_env(daemon, store),
    )
    assert quiet_result(result) == {"before": False, "local": "weights", "uri": "weights"}
