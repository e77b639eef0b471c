"""Staging folders: where new experiments and runs are built before one os.rename puts them in place.

A staging folder sits at the store's root, named ``.trackd-<16 hex>.trash``: MLflow skips every
root entry ending in ".trash" (see ``layout.staging_dir_path``), so a reader never meets a
half-made experiment or run. A daemon killed mid-build leaves one behind; those untouched for
an hour are removed when a writer next opens the store.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable

from . import _layout as layout

_log = logging.getLogger("trackd.store")
# Older than this, a staging folder was left by a crash: a build takes milliseconds, and another
# daemon (another host on a shared disk) may be building in a fresh one right now.
STALE_STAGING_AGE = 3600.0
# Names of the staging folders this process still uses, whatever their age: an artifact copy
# (_artifact_copies.py) holds its folder from the copy's start until its write places it, which
# for a large checkpoint on a slow disk, or a batch waiting for the last of many copies, can be
# hours. A writer made meanwhile (the daemon's first for that store, or one made again after the
# idle sweep forgot it) removed such a folder as stale, and the write then failed the artifact.
_IN_USE: set[str] = set()


def build_in_staging(root: str, fill: Callable[[str], None], destination: str) -> None:
    """Make a staging folder at ``root``, ``fill`` it, and rename it to ``destination``; on any error remove it.

    Raises FileExistsError when ``destination`` appeared meanwhile: another daemon on the same
    store (one per node on a shared disk, or one per socket) built it first; it is left as it is.
    """
    staging = layout.staging_dir_path(root)
    os.mkdir(staging)
    try:
        fill(staging)
        os.rename(staging, destination)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(exc.errno, "made by another writer meanwhile", destination) from None
        raise


def hold_staging(path: str) -> None:
    """Keep the staging folder ``path`` from remove_stale_staging until release_staging(path)."""
    _IN_USE.add(os.path.basename(path))


def release_staging(path: str) -> None:
    _IN_USE.discard(os.path.basename(path))


def remove_stale_staging(root: str) -> None:
    """Remove the staging folders at ``root`` untouched for STALE_STAGING_AGE, except those this
    process holds (hold_staging); log each."""
    cutoff = time.time() - STALE_STAGING_AGE
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        try:
            if (
                layout.is_staging_dir_name(entry.name)
                and entry.name not in _IN_USE
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                shutil.rmtree(entry.path)
                _log.info("Removed %s, a staging folder left by an interrupted write.", entry.path)
        except OSError as exc:
            _log.warning("Could not remove the staging folder %s: %s", entry.path, exc)
