"""Cuts a failed write owes: a metric file's tail it could not cut off, cut later only if nobody wrote since.

A store made read-only (or unwritable) after a write appended to its metric files refuses the cut
back of those it no longer holds open (MetricFileCache.rollback). The cut is owed, and made before
the store's next write or at the daemon's next start, which may be long after, once the store takes
writes again from everyone: MLflow itself, another node's daemon sharing the store. A cut recorded
as a path and a size cut whatever they appended since, and one to size 0 removed a file made since.
So an owed cut holds the file's identity (device, inode; and its modification time, as a file made
again may reuse the inode) and the size the failed write left, and is made only while the file at
that path is still that regular file, exactly that long, unmodified; otherwise it is
dropped with a log line (the failed write's points may then be in the file twice, which is less
harm than removing points others wrote and were told were written).
"""

from __future__ import annotations

import logging
import os
import stat
from typing import NamedTuple

from ._confinement import open_regular_for_truncate

_log = logging.getLogger("trackd.store")


class OwedCut(NamedTuple):
    """A metric file to cut back to ``size``, while it is still the regular file (``dev``, ``ino``)
    that the failed write left ``end`` bytes long and last modified at ``mtime_ns``."""

    size: int
    end: int
    dev: int
    ino: int
    mtime_ns: int


def owed_cut(path: str, size: int, fd: int | None = None) -> OwedCut | None:
    """The cut ``path`` is owed after a failed cut back to ``size``: None when it has no tail past
    ``size`` (a file the write never appended to), is gone, or is not the file the write held (``fd``)."""
    try:
        # By path, without opening it: a read-only store refuses an open for writing, not a stat.
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _log.error(
            "Could not look at metric file %r to owe it its cut back to %d bytes: %s; it is not cut back, "
            "and the points of the write that failed may appear in it twice.", path, size, exc.strerror or exc,
        )
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size <= size:
        return None
    if fd is not None:
        held = os.fstat(fd)
        if (held.st_dev, held.st_ino) != (info.st_dev, info.st_ino):
            return None  # replaced since the write opened it: the tail is in a file no longer there
    return OwedCut(size, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns)


def resolved(path: str) -> str:
    """``path`` with its folders' links resolved: a store reached through a linked path is the same store."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def make_owed_cut(path: str, cut: OwedCut, fd: int | None = None) -> bool:
    """Make ``cut`` through ``fd`` (a descriptor of ``path``) or a new one; False, with a log line,
    when the file changed since it was owed, and is left as it is. OSError if it still cannot be cut."""
    try:
        change = _change(path, os.lstat(path), cut)
        if change is None and cut.size == 0:
            os.remove(path)  # a file the failed write made: removed, as an empty metric file crashes get_run
            return True
        own = fd is None
        if change is None and own:
            fd = open_regular_for_truncate(path)
            change = "is gone" if fd is None else None
        if change is None:
            assert fd is not None
            try:
                # Looked at again through the descriptor that cuts: the file cut is the one checked.
                change = _change(path, os.fstat(fd), cut)
                if change is None:
                    os.ftruncate(fd, cut.size)
            finally:
                if own:
                    os.close(fd)
    except FileNotFoundError:
        change = "is gone"
    except OSError as exc:
        if exc.filename is None:  # ftruncate() names no file; the log line and the client's message should
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise
    if change is None:
        return True
    _log.warning(
        "Metric file %r %s since a failed write could not cut it back to %d bytes; it is not cut back, so as "
        "not to remove lines written to it since, and the points of the write that failed may appear in it twice.",
        path, change, cut.size,
    )
    return False


def _change(path: str, info: os.stat_result, cut: OwedCut) -> str | None:
    """How the file ``info`` describes differs from the one ``cut`` was owed by; None if it does not."""
    if not stat.S_ISREG(info.st_mode):
        return "is no longer a regular file"
    if (info.st_dev, info.st_ino) != (cut.dev, cut.ino):
        return "was replaced by another file"
    if info.st_size != cut.end:
        return f"is {info.st_size} bytes long, not the {cut.end} the failed write left"
    if info.st_mtime_ns != cut.mtime_ns:
        return "was modified"
    return None
