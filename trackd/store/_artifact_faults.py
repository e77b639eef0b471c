"""Whose fault an artifact that could not be stored is: the store's (everything waits) or the item's.

A write the disk refuses (full, read-only, I/O error: TRANSIENT_ERRNOS) makes the store's whole
batch wait and go again (an outage), which is right when the store's own disk refuses it: every
other write would fail too, and nothing is lost. But an artifact goes where its run's artifact
location says, and ``create_experiment(artifact_location=...)`` is the client's choice: a location
on a read-only mount, a full tmpfs or a failing NFS share refused that one artifact, over and over,
and so held every client's points of the store for as long as the daemon lived. So an artifact
write refused outside the store's filesystem is refused alone (the item's failure, told to the
client that logged it, naming the location and the error); and a file the daemon cannot read to
copy it (the source a client named) never is the store's fault (_artifact_copies.unreadable_source).

The store's filesystem: the location (its deepest existing folder) is on the root's device
(st_dev), wherever it lies: another filesystem mounted inside the store root (a full tmpfs, a
share) is not the store's, and held every client when "inside the root" alone decided. A full
disk, a quota or an I/O error on the store's own is the store's, and waiting keeps the artifact
with everything else. A read-only error counts only when the store's own mount is read-only too,
because a read-only bind mount shows its filesystem under the same device number. The daemon's
own limits on open files (ENFILE, EMFILE) are never a location's: they refuse every write.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress

from ..errors import StoreError
from ._confinement import is_within
from ._write_rules import TRANSIENT_ERRNOS

# Refused by the daemon's limits, whichever file was written.
_DAEMON_ERRNOS = frozenset({errno.ENFILE, errno.EMFILE})


def location_refusal(
    exc: OSError, artifacts_root: str, roots: tuple[str, str], relative: str, run_id: str
) -> StoreError | None:
    """The item's failure for ``exc``, raised writing artifact ``relative`` below ``artifacts_root``;
    None when the store is at fault (or ``exc`` is no disk refusal): the write raises ``exc`` as before.

    ``roots``: the store's root and its realpath.
    """
    if exc.errno not in TRANSIENT_ERRNOS or exc.errno in _DAEMON_ERRNOS:
        return None
    location = os.path.normpath(artifacts_root)
    inside = any(is_within(location, root) for root in roots)
    if _on_store_filesystem(exc, location, roots[0], inside=inside):
        return None
    where = "" if exc.filename is None or exc.filename == location else f" at {exc.filename!r}"
    placed = "inside the store but on a mount of its own" if inside else "outside the store"
    return StoreError(
        f"Cannot write artifact {relative!r} of run {run_id}: its artifact folder {location!r}, {placed}, "
        f"refused the write ({exc.strerror}, {errno.errorcode.get(exc.errno or 0, exc.errno)}{where}). "
        "The artifact was not stored; the store's other writes go on. Make room there or make it "
        "writable (it is the experiment's artifact_location), then log the artifact again."
    )


def _on_store_filesystem(exc: OSError, location: str, root: str, *, inside: bool) -> bool:
    """Whether ``location`` (or its deepest existing folder) is on the store's filesystem, and, for a
    read-only error, the store's own mount is read-only too; ``inside``: it lies inside the store
    root, so a folder of it that cannot be looked at is the store's disk failing."""
    try:
        store = os.stat(root)
    except OSError:
        return True  # the store's own root cannot be looked at: its disk is at fault
    folder = location
    while True:
        try:
            device = os.stat(folder).st_dev
            break
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(folder)
            if parent == folder:
                return False
            folder = parent
        except OSError:
            return inside  # that disk fails (an I/O error looking at it): the location's, or inside, the store's
    if device != store.st_dev:
        return False
    if exc.errno != errno.EROFS:
        return True
    with suppress(OSError):
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    return True
