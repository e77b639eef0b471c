"""Artifact files trackd makes in the media folder: ``log_figure`` and ``log_image``, ``log_text`` and
``log_dict`` over the inline limit, and the snapshots ``log_artifact(s)`` takes of large files.

MLflow saves the object into a file in a temporary folder and logs that file under the
``artifact_file``'s folder (``MlflowClient._log_artifact_helper``); trackd does the same, through
``log_artifact``'s records. The objects are duck-typed: trackd imports neither matplotlib, plotly
nor Pillow, and only Pillow, when a NumPy array must become an image (as MLflow does).
"""

from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..protocol import MAX_INLINE_ARTIFACT_SIZE
from ._artifacts import artifact_file_name, content_record, file_records
from ._snapshot import Snapshots

if TYPE_CHECKING:
    from ._client_artifacts import ClientArtifacts

# The extensions MLflow's log_figure saves a plotly figure to with write_image (".html": write_html).
PLOTLY_IMAGE_EXTENSIONS = (".png", ".jpeg", ".webp", ".svg", ".pdf")
# MLflow's log_image(key=...): images/<key>+step+<step>+timestamp+<ms>+<uuid>.png, and a copy whose
# longer side is COMPRESSED_IMAGE_SIZE pixels as ...+compressed.webp, and this tag on the run.
IMAGES_FOLDER = "images"
COMPRESSED_IMAGE_SIZE = 256
LOGGED_IMAGES_TAG = "mlflow.loggedImages"


@contextmanager
def saved_artifact(client: ClientArtifacts, run_id: str, artifact_file: str | os.PathLike[str]) -> Iterator[str]:
    """A path to save ``artifact_file`` to; the file saved there is logged when the block ends.

    A file up to MAX_INLINE_ARTIFACT_SIZE travels in the record, and its temporary folder goes at
    once. A larger one travels as its path, copied by the daemon later: the folder goes once the
    daemon has written it (``Sender.remove_once_written``), without the call waiting for that; if
    the record is spooled, once the spool is delivered, by whichever process delivers it
    (``_media_folders``).
    """
    name = artifact_file_name(artifact_file)  # MLflow's posixpath.normpath, and trackd's checks
    folder, file_name = posixpath.split(name)
    import shutil

    # Beside the spool: a spooled record's file is removed by whoever delivers the spool.
    temporary = client._sender.media.new_folder()
    by_path = False
    try:
        path = os.path.join(temporary, file_name)
        yield path
        records = list(file_records(run_id, path, folder or None))
        # Copied by the daemon from this path after the call: the folder must outlive the record's
        # delivery. (A Ctrl-C during a wait for it once removed the file with its record buffered,
        # and the figure was lost: "... cannot be read (No such file or directory)" at exit.)
        by_path = any(record[4] is not None for record in records)
        for record in records:
            client._sender.submit_artifact(record)
    finally:
        if not by_path:
            shutil.rmtree(temporary, ignore_errors=True)
    if by_path:
        client._sender.remove_once_written(temporary)


def submit_content(client: ClientArtifacts, run_id: str, artifact_file: str, content: bytes) -> None:
    """Log ``content`` (``log_text``, ``log_dict``) as ``artifact_file``: in its record up to
    MAX_INLINE_ARTIFACT_SIZE, else saved to a file of the media folder and sent by path, as a large
    figure is. (MLflow writes any size; over 8 MiB was refused here, and an evaluation script that
    dumped its predictions at its end raised there.)"""
    if len(content) <= MAX_INLINE_ARTIFACT_SIZE:
        client._sender.submit_artifact(content_record(run_id, artifact_file, content))
        return
    with saved_artifact(client, run_id, artifact_file) as path, open(path, "wb") as file:
        file.write(content)


@contextmanager
def call_snapshots(client: ClientArtifacts) -> Iterator[Snapshots | None]:
    """The ``Snapshots`` of one ``log_artifact(s)`` call (None with TRACKD_ARTIFACT_SNAPSHOT=0);
    their folder goes once the daemon has written the records, as a large figure's does."""
    sender = client._sender
    if not sender.config.artifact_snapshot:
        yield None
        return
    taken = Snapshots(sender.media, sender.store_root)
    try:
        yield taken
    finally:
        if taken.folder is not None and taken.taken:
            sender.remove_once_written(taken.folder)
        elif taken.folder is not None:
            import shutil

            shutil.rmtree(taken.folder, ignore_errors=True)  # made, but nothing copied into it


def save_figure(figure: Any, path: str, artifact_file: str | os.PathLike[str], save_kwargs: Mapping[str, Any] | None) -> None:
    """Save ``figure`` to ``path`` as MLflow's log_figure does: ``savefig`` (matplotlib), or
    ``write_html``/``write_image`` by the extension of ``artifact_file`` (plotly)."""
    kwargs = dict(save_kwargs or {})  # MLflow's setdefault below changed the caller's dict
    if callable(getattr(figure, "savefig", None)):
        figure.savefig(path, **kwargs)
    elif callable(getattr(figure, "write_html", None)) and callable(getattr(figure, "write_image", None)):
        extension = os.path.splitext(os.fspath(artifact_file))[1]
        if extension == ".html":
            kwargs.setdefault("include_plotlyjs", "cdn")
            kwargs.setdefault("auto_open", False)
            figure.write_html(path, **kwargs)
        elif extension in PLOTLY_IMAGE_EXTENSIONS:
            figure.write_image(path, **kwargs)
        else:
            raise TypeError(f"Unsupported file extension for plotly figure: '{extension}'")
    else:
        # MLflow's words; trackd also names what it looks for, as it does not check the class.
        raise TypeError(
            f"Unsupported figure object type: '{type(figure)}' (expected a matplotlib figure, with savefig(), "
            "or a plotly figure, with write_html() and write_image())."
        )


def check_image_arguments(artifact_file: object, key: object, step: object, timestamp: object) -> None:
    """MLflow's rule for log_image's two forms, in its words."""
    if artifact_file is not None and any(arg is not None for arg in (key, step, timestamp)):
        raise TypeError(
            "The `artifact_file` parameter cannot be used in conjunction with `key`, `step`, or `timestamp` "
            "parameters. Please ensure that `artifact_file` is specified alone, without any of these conflicting "
            "parameters."
        )
    if artifact_file is None and key is None:
        raise TypeError(
            "Invalid arguments: Please specify exactly one of `artifact_file` or `key`. Use `key` to log dynamic "
            "image charts or `artifact_file` for saving static images."
        )


def as_image(image: Any) -> Any:
    """``image`` as MLflow's log_image saves it: a PIL image (anything with ``save(path)``); an
    ``mlflow.Image``'s PIL image; a NumPy array made one by Pillow, with MLflow's rules."""
    numpy = sys.modules.get("numpy")  # an array means NumPy is loaded: no import for the other types
    if numpy is not None and isinstance(image, numpy.ndarray):
        return _image_from_array(image)
    if type(image).__module__.startswith("mlflow.") and callable(getattr(image, "to_pil", None)):
        return image.to_pil()  # mlflow.Image
    if callable(getattr(image, "save", None)):
        return image
    raise TypeError(
        f"Unsupported image object type: {type(image)}. `image` must be one of numpy.ndarray, PIL.Image.Image, "
        "and mlflow.Image."
    )


def _image_from_array(array: Any) -> Any:
    try:
        from PIL import Image  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:  # MLflow's message: it needs Pillow too
        raise ImportError(
            "Pillow is required to serialize a numpy array as an image. Please install it via: `pip install Pillow`"
        ) from exc
    return Image.fromarray(image_pixels(array))


def image_pixels(array: Any) -> Any:
    """A NumPy image as the uint8 array MLflow's convert_to_pil_image gives Pillow: bool, int in
    [0, 255] or float in [0, 1] (rescaled by min and max, with a warning, if outside), H x W or
    H x W x 1, 3 or 4."""
    import numpy as np

    kinds = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "floating"}
    if array.dtype.kind not in kinds:
        raise TypeError(f"Invalid array data type: '{array.dtype}'. Must be one of {list(kinds.values())}")
    if array.ndim not in (2, 3):
        raise ValueError(f"`image` must be a 2D or 3D array but got image shape: {array.shape}")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise ValueError(f"Invalid channel length: {array.shape[2]}. Must be one of [1, 3, 4]")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    is_int = np.issubdtype(array.dtype, np.integer)
    high = 255 if is_int else 1
    if array.min() < 0 or array.max() > high:
        if is_int:
            raise ValueError(
                "Integer pixel values out of acceptable range [0, 255]. "
                f"Found minimum value {array.min()} and maximum value {array.max()}. "
                "Ensure all pixel values are within the specified range."
            )
        import warnings

        warnings.warn(
            "Float pixel values out of acceptable range [0.0, 1.0]. "
            f"Found minimum value {array.min()} and maximum value {array.max()}. "
            "Rescaling values to [0.0, 1.0] with min/max scaler.",
            stacklevel=4,
        )
        array = (array - array.min()) / (array.max() - array.min())
    if not is_int:
        array = array * 255
    return array.astype(np.uint8)


def image_files(key: str, step: int | None, timestamp_ms: int) -> tuple[str, str]:
    """The two artifact files of MLflow's log_image(key=...): the image, and its compressed copy."""
    import re
    import uuid

    # MLflow's check, in its words.
    if type(key) is not str or not re.match(r"^[a-zA-Z0-9_\-./ ]+$", key):
        raise ValueError(
            "The `key` parameter may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces "
            f"( ), and slashes (/).The provided key `{key}` contains invalid characters."
        )
    # MLflow 3.17: "/" becomes "~" (a key's slashes made no folders) and "+" separates the parts.
    stem = f"{IMAGES_FOLDER}/{key.replace('/', '~')}+step+{step or 0}+timestamp+{timestamp_ms}+{uuid.uuid4()}"
    return f"{stem}.png", f"{stem}+compressed.webp"


def compressed(image: Any) -> Any:
    """MLflow's compress_image_size: ``image`` resized so its longer side is COMPRESSED_IMAGE_SIZE."""
    width, height = image.size
    if width > height:
        size = (COMPRESSED_IMAGE_SIZE, int(height * (COMPRESSED_IMAGE_SIZE / width)))
    else:
        size = (int(width * (COMPRESSED_IMAGE_SIZE / height)), COMPRESSED_IMAGE_SIZE)
    return image.resize(size)
