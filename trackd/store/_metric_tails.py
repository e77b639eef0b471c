"""Metric file tails: cutting a metric file back to complete lines, now, with nothing owed.

MLflow appends each line with ``open(path, "a")`` and one write(); what it cannot read is a partial
line ("17000" crashes get_run, get_metric_history and search_runs) or an empty file ("No data
found"). So a file a crash left without a final "\\n" is cut back to its last complete line when it
is opened (repair_partial_last_line), and a write that did not finish is undone by cutting its
files back to their sizes before it, removing those it created (cut_back, truncate_files). A file
that cannot be cut back now is owed its cut (``_owed_cuts``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable

from ._confinement import open_regular_for_truncate
from ._owed_cuts import OwedCut, owed_cut, resolved

_log = logging.getLogger("trackd.store")
_TAIL_CHUNK = 64 * 1024


def truncate_files(files: Iterable[tuple[str, int]]) -> dict[str, OwedCut]:
    """Cut each file back to a recorded size, removing files that end up empty; those that could
    not be (logged), with the cuts they are owed.

    Used to undo a write that did not finish (a crash, a full disk): an empty metric file would
    crash MLflow's get_run ("No data found"), and a file a write created did not exist before.
    """
    owed = {}
    for path, size in files:
        try:
            cut_back(path, size, None)
        except OSError as exc:
            _log.error("Could not cut metric file %r back to %d bytes: %s", path, size, exc.strerror or exc)
            if (cut := owed_cut(path, size)) is not None:
                owed[resolved(path)] = cut
    return owed


def cut_back(path: str, size: int, fd: int | None) -> None:
    """Cut ``path`` back to ``size`` through ``fd`` if given (the write's own descriptor), else through a
    new one; a file cut to nothing is removed. A missing file is left missing; OSError if it cannot be cut."""
    try:
        if size == 0:
            # Removed, not emptied first: an empty metric file crashes MLflow's get_run, and one
            # that cannot be removed (a read-only folder) stays readable, its cut owed. Only a
            # regular file: a link or FIFO planted at its name is not the write's.
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.remove(path)
            return
        own = fd is None
        if own:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size <= size:
                return  # nothing to cut: not opened, which a read-only store refuses
            # Through a descriptor opened with O_NOFOLLOW: a link planted since the write (even by
            # a journal replayed at the next start) is never followed to cut someone else's file.
            fd = open_regular_for_truncate(path)
            if fd is None:
                return
        assert fd is not None
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        finally:
            if own:
                os.close(fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.filename is None:  # ftruncate() names no file; the log line and the client's message should
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


def repair_partial_last_line(fd: int, path: str, size: int) -> None:
    """Cut ``path`` (open as ``fd``, ``size`` bytes) back to its last complete line, with a log line."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    _log.warning(
        "Metric file %r ended with a partial line (%d bytes after the last newline), left by a "
        "crash; truncating it so that MLflow can read the file.",
        path,
        size - keep,
    )
    # When nothing is left, the append that opened the file is about to write a first line.
    os.ftruncate(fd, keep)
