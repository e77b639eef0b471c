"""``download_artifacts``: a run's artifact file or folder copied out of ./mlruns, where MLflow puts it.

MLflow's ``MlflowClient.download_artifacts(run_id, path, dst_path)`` (through
``mlflow.artifacts.download_artifacts``) on a local store, whose answers these copy:

- ``dst_path`` is made if missing (with its parents); None means a new temporary folder.
- A ``path`` goes through a ``runs:/<run_id>/<path>`` URI, split at its last "/": only the last
  part lands in the destination. ``"cfg/sub/d.txt"`` gives ``<dst>/d.txt``; a folder ``"cfg"``
  gives ``<dst>/cfg`` holding its tree; ``"cfg/"`` copies the folder's content into ``<dst>``
  itself. The returned path is ``os.path.join(dst, os.path.normpath(last part))``.
- An empty ``path`` (or None) is the artifact root: without ``dst_path`` the run's own artifact
  folder in the store is returned, not a copy (LocalArtifactRepository.get_local_path); with one,
  the root's content is copied into it and ``dst_path`` (absolute) is returned.
- Files are copied with their times and mode (shutil.copy2); into an existing folder, files of
  the same name are replaced and others kept. MLflow's upload temp files are left out, as
  list_artifacts leaves them out.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable

from ..store import StoreReader
from ..store._layout import MLFLOW_ARTIFACT_TEMP_PREFIX


def download_run_artifacts(reader: StoreReader, run_id: str, path: str | None, dst_path: str | os.PathLike[str] | None) -> str:
    """Copy the run's artifact ``path`` (checked in the store first) as MLflow's download_artifacts does; its local path."""
    source = reader.artifact_local_path(run_id, path)
    if dst_path is not None:
        os.makedirs(dst_path, exist_ok=True)  # mlflow.artifacts.download_artifacts: Path.mkdir(parents=True)
    if not path:
        if not dst_path:
            return source
        return copy_into(source, os.path.abspath(dst_path))
    return copy_last_part(source, path, dst_path)


def copy_last_part(source: str, path: str, dst_path: str | os.PathLike[str] | None) -> str:
    """Copy ``source``, the artifact ``path``, to ``<dst>/<last part of path>`` (``<dst>`` for a path
    ending in "/"); ``dst_path`` None: a new temporary folder."""
    dst = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp()
    name = posixpath.basename(path)
    return copy_into(source, os.path.join(dst, os.path.normpath(name)) if name else dst)


def copy_into(source: str, target: str) -> str:
    """Copy the file or folder ``source`` to ``target`` (a folder's tree merged into an existing one); ``target``."""
    if os.path.isdir(source):
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=_upload_temp_files)
    else:
        shutil.copy2(source, target)
    return target


def _upload_temp_files(folder: str, names: Iterable[str]) -> set[str]:
    # LocalArtifactRepository.list_artifacts skips them, and so does its download of a folder.
    return {name for name in names if name.startswith(MLFLOW_ARTIFACT_TEMP_PREFIX)}
