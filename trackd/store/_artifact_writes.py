"""Writing one artifact into a run's artifact folder: from bytes that travelled inline, or copied
from a file the daemon reads by path (by the daemon ahead of the write, see _artifact_copies), and
never outside that folder.

The default artifact folder lies inside the store, so its folders are confined like every other
write (no link planted in the store is followed); a custom location outside the store is the
user's own, so only its resolved path is checked against the artifact folder. Temp files live
next to the artifact folder, never inside it, so MLflow's list_artifacts never shows them. A
location outside the store whose disk refuses the write (read-only, full) refuses this artifact
alone, and never makes the store's other writes wait (_artifact_faults).
"""

from __future__ import annotations

import os
import threading
from stat import S_IMODE, S_ISDIR

from ..errors import InvalidArgument, StoreError
from . import _layout as layout
from ._artifact_copies import ARTIFACT_PERMISSIONS, ArtifactCopy
from ._artifact_faults import location_refusal
from ._confinement import check_confined, is_within
from ._format import write_file_atomic
from ._validation import validate_artifact_path
from ._write_items import ArtifactWrite


def write_artifact(item: ArtifactWrite, artifact_uri: str, root: str, real_root: str) -> None:
    """Store ``item`` below the run's ``artifact_uri``; the store's ``root`` (and its realpath) confine it."""
    relative = validate_artifact_path(item.path)
    folder = item.mode is not None and S_ISDIR(item.mode)
    if folder and (item.content is not None or item.source_path is not None):
        raise InvalidArgument(f"Artifact folder {relative!r} of run {item.run_id} has content; expected an empty folder.")
    if not folder and (item.content is None) == (item.source_path is None):
        raise InvalidArgument(
            f"Artifact {relative!r} of run {item.run_id} needs exactly one of content and "
            f"source_path, got {'both' if item.content is not None else 'neither'}."
        )
    artifacts_root = layout.file_uri_to_path(artifact_uri)
    if artifacts_root is None:
        raise StoreError(
            f"Cannot write artifact {relative!r} of run {item.run_id}: its artifact URI "
            f"{artifact_uri!r} is not a local file:// location, the only kind trackd writes."
        )
    target = layout.artifact_path(artifacts_root, relative)
    # The folder to make: the file's, or the empty folder itself.
    parent = target if folder else os.path.dirname(target)
    in_store = os.path.normpath(artifacts_root)
    if is_within(in_store, root) or is_within(in_store, real_root):
        # The default location, inside the run folder: no link planted in the store is followed.
        try:
            check_confined(parent, root, real_root)
        except StoreError as exc:
            reason = str(exc)
            raise InvalidArgument(
                f"Invalid artifact path {relative!r} for run {item.run_id}: {reason[0].lower()}{reason[1:]}"
            ) from None
    own_copy = None
    if item.copy is None and item.source_path is not None:
        # No copy made ahead (a StoreWriter used as a library): copied now as the daemon copies,
        # into the store's staging folder, where a read of the source that fails is told from a
        # write of the store's disk that fails as it happens. (Copied straight to the artifact, a
        # read error past the source's first byte was taken for the store's disk failing.)
        own_copy = ArtifactCopy(root, item.run_id, relative, item.source_path, mode=item.mode)
        own_copy.run(threading.Event())
    copy = item.copy or own_copy
    try:
        if copy is not None:
            copy.raise_error()  # its source unreadable (the item's), or the store's disk refused the copy
        try:
            _write(item, copy, folder, parent, target, artifacts_root, relative)
        except OSError as exc:
            # A refusal of a location outside the store's filesystem is this artifact's alone (_artifact_faults).
            if (refused := location_refusal(exc, artifacts_root, (root, real_root), relative, item.run_id)) is None:
                raise
            raise refused from exc
    finally:
        if own_copy is not None:
            own_copy.discard()  # (placed already, unless the write failed)


def _write(
    item: ArtifactWrite, copy: ArtifactCopy | None, folder: bool, parent: str, target: str, artifacts_root: str, relative: str
) -> None:
    os.makedirs(artifacts_root, exist_ok=True)
    _check_inside(parent, artifacts_root, relative, item.run_id)
    # MLflow's log_artifacts makes every folder of the tree, empty ones too (os.mkdir, so of the
    # default mode: a folder's own mode is not kept); a file already there is an error, as there.
    os.makedirs(parent, exist_ok=True)
    _check_inside(parent, artifacts_root, relative, item.run_id)
    if folder:
        return
    # A file keeps its permission bits, as MLflow's shutil.copy2 keeps them (an executable script
    # stays executable); setuid, setgid and sticky are not kept.
    mode = None if item.mode is None else S_IMODE(item.mode) & ARTIFACT_PERMISSIONS
    # The run folder, for the default location.
    temp_dir = os.path.dirname(artifacts_root)
    if item.content is not None:
        write_file_atomic(target, item.content, temp_dir, mode)
    else:
        # Copied ahead of this write (by the daemon, off the writer thread: see _artifact_copies),
        # with its mode: a rename.
        assert copy is not None
        copy.place(target, temp_dir)


def _check_inside(folder: str, artifacts_root: str, relative: str, run_id: str) -> None:
    root = os.path.realpath(artifacts_root)
    real = os.path.realpath(folder)
    if real != root and not real.startswith(root + os.sep):
        raise InvalidArgument(
            f"Invalid artifact path {relative!r} for run {run_id}: it resolves to {real!r}, "
            f"outside the run's artifact folder {root!r} (a symbolic link points out of it)."
        )
