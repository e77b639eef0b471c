"""MLflow's ``mlflow.artifacts.download_artifacts``, ``load_text`` and ``load_dict``, for code ported with ``import trackd as mlflow``.

Evaluation scripts fetch what a training run logged with
``mlflow.artifacts.download_artifacts(run_id=..., artifact_path=..., dst_path=...)`` or with a
``runs:/<run_id>/<path>`` URI; both read the store after flushing what this process logged, as
``Client.download_artifacts`` does, and answer as MLflow's does on a local store. A local path or
``file:`` URI is read as it is, after the same flush. Loaded on first access, not by ``import trackd``.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import ArtifactNotFound, InvalidArgument

if TYPE_CHECKING:
    from .client import Client

__all__ = ["download_artifacts", "load_dict", "load_text"]


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | os.PathLike[str] | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
) -> str:
    """Copy an artifact file or folder to ``dst_path`` (made if missing; default: a new temporary
    folder) and return its local path, as MLflow's does.

    Exactly one of ``run_id`` (with ``artifact_path``, as ``Client.download_artifacts(run_id,
    artifact_path, dst_path)``) and ``artifact_uri``: ``runs:/<run_id>/<path>``, or a local path
    or ``file:`` URI (returned as it is without ``dst_path``). Other URIs (``models:/``, ``s3://``)
    raise InvalidArgument: download those with MLflow itself. ``tracking_uri``: the store of the
    run (default: the fluent API's, ``trackd.get_tracking_uri()``).
    """
    # MLflow's checks and words (mlflow.artifacts.download_artifacts, INVALID_PARAMETER_VALUE).
    if (run_id is None) == (artifact_uri is None):
        raise InvalidArgument("Exactly one of `run_id` or `artifact_uri` must be specified")
    if artifact_uri is not None and artifact_path is not None:
        raise InvalidArgument("`artifact_path` cannot be specified if `artifact_uri` is specified")
    if artifact_uri is not None:
        run_id, artifact_path = _runs_uri_parts(str(artifact_uri))
        if run_id is None:
            return _download_local(str(artifact_uri), dst_path, tracking_uri)
        if not artifact_path and not dst_path:
            # "runs:/<id>/": MLflow copies the whole root into a new folder (its run_id form
            # without a path gives the store's own folder instead, as Client.download_artifacts).
            dst_path = tempfile.mkdtemp()
    assert run_id is not None
    with _client(tracking_uri) as client:
        return client.download_artifacts(run_id, artifact_path or "", dst_path)


def load_text(artifact_uri: str) -> str:
    """The text of the artifact file at ``artifact_uri`` (as ``download_artifacts`` takes it), as MLflow's does.

    A ported evaluation script read its run's notes with it and got an AttributeError with no advice.
    Read as UTF-8, as log_text writes (MLflow's reads in the locale's encoding).
    """
    with tempfile.TemporaryDirectory() as folder, open(download_artifacts(artifact_uri, dst_path=folder), encoding="utf-8") as file:
        return file.read()


def load_dict(artifact_uri: str) -> dict[str, Any]:
    """The JSON object in the artifact file at ``artifact_uri`` (what ``log_dict`` wrote to a .json
    file), as MLflow's does; InvalidArgument, in MLflow's words, when the file holds no JSON."""
    text = load_text(artifact_uri)
    try:
        loaded: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidArgument("Unable to form a JSON object from file content") from None
    return loaded


def _runs_uri_parts(uri: str) -> tuple[str | None, str]:
    """(run_id, path) of ``runs:/<run_id>/<path>``; (None, "") for a URI of another scheme."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "runs":
        return None, ""
    run_id, slash, path = parsed.path[1:].partition("/")
    if parsed.netloc or not parsed.path.startswith("/") or not run_id or not slash:
        # MLflow splits the URI at its last "/" and parses what is before it, in these words.
        raise InvalidArgument(
            f"Not a proper runs:/ URI: {uri}. Runs URIs must be of the form 'runs:/<run_id>/run-relative/path/to/artifact'"
        )
    return run_id, path


def _download_local(uri: str, dst_path: str | os.PathLike[str] | None, tracking_uri: str | os.PathLike[str] | None) -> str:
    """A local path or ``file:`` URI: itself without ``dst_path``, else copied to ``<dst>/<its name>``."""
    from .client._downloads import copy_last_part
    from .store._layout import file_uri_to_path

    local = file_uri_to_path(uri)
    if local is None:
        raise InvalidArgument(
            f"Cannot download {uri!r}: trackd downloads runs:/<run_id>/<path> URIs, local paths and file: URIs "
            f"of its store; use mlflow.artifacts.download_artifacts for other URIs."
        )
    with _client(tracking_uri) as client:
        client._flush_for_read("download_artifacts")  # it may be an artifact of a run this process logged to
    if not os.path.exists(local):
        raise ArtifactNotFound(f"No such artifact: {local!r} does not exist.")
    if dst_path is not None:
        os.makedirs(dst_path, exist_ok=True)
    if not dst_path:
        return local
    return copy_last_part(local, os.path.basename(local), dst_path)


@contextmanager
def _client(tracking_uri: str | os.PathLike[str] | None) -> Iterator[Client]:
    """The Client of ``tracking_uri``: the fluent API's for None (left open, as trackd.get_run
    leaves it), else one closed afterwards (sharing the sender of the store's open Clients)."""
    from .client import Client
    from .client._fluent import get_client

    if tracking_uri is None:
        yield get_client()
        return
    with Client(tracking_uri) as client:
        yield client
