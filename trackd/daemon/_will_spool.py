"""Whether a will's spool file still holds something to deliver: its runs' end may be in it.

A will waits for it (``_wills.py``): the runs of a process whose spool holds batches `trackd sync`
has not delivered yet are not failed.
"""

from __future__ import annotations

import os
import stat

from .._paths import spool_paths
from ..errors import LocalProtocolError
from ..protocol import FRAME_HEADER_SIZE, decode_header


def spooled(spool_path: str) -> bool:
    """Whether the spool at ``spool_path`` (a will's) is on disk and holds something: it may hold the runs' end, not delivered yet."""
    # Set aside (renamed) by a background delivery, it waits for `trackd sync` all the same.
    return bool(spool_path) and any(_holds_anything(path) for path in spool_paths(spool_path))


def _holds_anything(path: str) -> bool:
    """Whether the file at ``path`` exists and holds more than its Hello (or a damaged Hello).

    An empty spool holds nothing, not even its Hello: one its process delivered but could not
    delete (a read-only spool folder) is emptied instead, and nothing removes it. Waited for, it
    left the process's runs RUNNING for ever once the process was SIGKILLed. Nor does one that
    holds its Hello alone, which its process made and then could not write its batches to (a
    full disk, a file size limit: they stayed in memory), or was killed before it did: the will
    waited until a `trackd sync` or another process's background delivery removed it.
    """
    try:
        info = os.stat(path)
    except OSError:  # gone (delivered); or not to be seen, as os.path.exists took it
        return False
    if info.st_size == 0 or not stat.S_ISREG(info.st_mode):
        return info.st_size > 0
    try:
        # Not blocking: a FIFO put there since the stat would wait for a writer, in the event loop.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not to be read now (out of descriptors): as the stat says
    try:
        size, header = os.fstat(fd).st_size, os.pread(fd, FRAME_HEADER_SIZE, 0)
    except OSError:
        return True
    finally:
        os.close(fd)
    try:
        hello = FRAME_HEADER_SIZE + decode_header(header) if len(header) == FRAME_HEADER_SIZE else size
    except LocalProtocolError:
        return True  # not a spool this daemon can read: `trackd sync` says what it is
    return size > hello
