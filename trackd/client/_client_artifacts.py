"""What ``Client`` logs as artifacts: files and folders, text, dicts, figures and images.

Each method checks the run at the call site and sends artifact records (``_artifacts.py``) through
the sender, from the caller's file, from the call's snapshot of it, or from a file made in the
media folder (``_media.py``); the logging of metrics, params and tags stays in ``_client.py``.
These are ``ClientArtifacts``, a base of ``Client``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..store import validate_artifact_text, validate_step, validate_timestamp
from ._artifacts import artifact_file_name, dict_content, file_records, tree_records

if TYPE_CHECKING:
    from ._operations import RunOperations
    from ._sender import Sender


class ClientArtifacts:
    """The artifact methods of ``Client`` (a base of it)."""

    _sender: Sender

    if TYPE_CHECKING:  # Client's, which these methods use

        def _check_run(self, run_id: str) -> None: ...

        def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> RunOperations | None: ...

    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None = None) -> None:
        """Copy a file (or a directory, as a subdirectory) into the run's artifacts.

        The file may change or be deleted as soon as this returns, as with MLflow: files up to
        8 MiB are read now and travel with the event; larger ones are copied now into the media
        folder, which the daemon copies from. With TRACKD_ARTIFACT_SNAPSHOT=0 (or when that copy
        cannot be made, said in one line) the daemon copies from ``local_path`` itself, which must
        then stay unchanged until flush() returns.
        """
        self._check_run(run_id)
        from ._media import call_snapshots

        with call_snapshots(self) as snapshots:
            for record in file_records(run_id, local_path, artifact_path, snapshots):
                self._sender.submit_artifact(record)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None = None) -> None:
        """Copy every file under ``local_dir`` into the run's artifacts, keeping the tree (see log_artifact)."""
        self._check_run(run_id)
        from ._media import call_snapshots

        with call_snapshots(self) as snapshots:
            for record in tree_records(run_id, local_dir, artifact_path, snapshots):
                self._sender.submit_artifact(record)

    def log_text(self, run_id: str, text: str, artifact_file: str | os.PathLike[str]) -> None:
        """Write ``text`` (UTF-8) as an artifact file, of any size."""
        self._check_run(run_id)
        from ._media import submit_content

        name = artifact_file_name(artifact_file)
        submit_content(self, run_id, name, validate_artifact_text(name, text))

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str | os.PathLike[str]) -> None:
        """Write a dict as JSON (``.json``, indented as MLflow does) or YAML (``.yaml``/``.yml``)."""
        self._check_run(run_id)
        from ._media import submit_content

        name = artifact_file_name(artifact_file)
        submit_content(self, run_id, name, dict_content(dictionary, name))

    def log_figure(
        self, run_id: str, figure: Any, artifact_file: str | os.PathLike[str], *, save_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Save a matplotlib figure (``savefig``) or a plotly one (``write_html``/``write_image``,
        by extension) as an artifact file, as MLflow's log_figure does."""
        self._check_run(run_id)
        from ._media import save_figure, saved_artifact

        with saved_artifact(self, run_id, artifact_file) as path:
            save_figure(figure, path, artifact_file, save_kwargs)

    def log_image(
        self, run_id: str, image: Any, artifact_file: str | os.PathLike[str] | None = None, key: str | None = None,
        step: int | None = None, timestamp: int | None = None, synchronous: bool | None = None,
    ) -> None:
        """Save a PIL image (or an mlflow.Image, or a NumPy array through Pillow) as MLflow's log_image
        does: as ``artifact_file``, or with ``key`` as an image per step under ``images/``."""
        self._check_run(run_id)
        from ._media import LOGGED_IMAGES_TAG, as_image, check_image_arguments, compressed, image_files, saved_artifact

        check_image_arguments(artifact_file, key, step, timestamp)
        image = as_image(image)
        if artifact_file is not None:
            with saved_artifact(self, run_id, artifact_file) as path:
                image.save(path)
            return
        assert key is not None
        # MLflow's `timestamp or now`.
        timestamp_ms = validate_timestamp(key, timestamp) if timestamp else time.time_ns() // 1_000_000
        files = image_files(key, validate_step(key, step or 0), timestamp_ms)
        for file, picture in zip(files, (image, compressed(image))):
            with saved_artifact(self, run_id, file) as path:
                picture.save(path)
        # str(True), as MLflow's set_tag(run_id, MLFLOW_LOGGED_IMAGES, True) stores it.
        self.set_tag(run_id, LOGGED_IMAGES_TAG, True, True if synchronous else None)
