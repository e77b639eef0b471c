"""One "waiting" line for the processes whose exits wait together for one stalled daemon.

A job's rank that forks DataLoader-style workers (``os.fork``, a fork ``Pool``) exits with each of
them waiting for the daemon: 4 ranks with 2 workers each printed 12 "waiting up to N s more" lines
for one SIGSTOPped daemon, and 8 x 8 would print 72. Ranks that are processes of their own (a
spawn ``Pool``, ``mp.spawn``, a launcher's ``python`` per rank) printed two lines each on the job's
one stderr, the same "waiting" line four times before four outcomes. Each process still says what
became of its own events (its count, the spool file); the wait is said once for the processes that
wait together: a fork family (``wait_unsaid``), or processes writing to one stderr
(``wait_unsaid_on_stderr``).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import stat
import struct
import time
from typing import TYPE_CHECKING

from ._outbox import warn_descriptor

if TYPE_CHECKING:
    from pathlib import Path

# Until when (time.monotonic(), one clock for every process of the machine) a wait said by a
# process of this family lasts. Shared with every process forked after this module loaded (an
# anonymous mmap is MAP_SHARED): the client's modules load at its first run, before its workers
# are forked. A process started afresh (spawn, exec) has its own: see wait_unsaid_on_stderr.
_ANNOUNCED_UNTIL = mmap.mmap(-1, struct.calcsize("d"))
# A wait that ends this little after the said one is covered by it: workers joined together start
# their waits within a fraction of a second of each other.
SLACK = 0.5
# How long a process tries for the notes file's lock before it says its wait anyway: the others
# hold it for one read and one write. A holder stopped in between (SIGSTOP) costs a line, not the exit.
LOCK_PATIENCE = 0.2


def wait_unsaid(seconds: float) -> bool:
    """Whether a wait of ``seconds`` from now is not covered by one another process of this family
    said already: if so, it is noted as said (this process says it). Two processes can both find it
    unsaid in the same instant: two lines, as before, not none."""
    now = time.monotonic()
    (until,) = struct.unpack_from("d", _ANNOUNCED_UNTIL, 0)
    if until + SLACK >= now + seconds:
        return False
    struct.pack_into("d", _ANNOUNCED_UNTIL, 0, max(until, now + seconds))
    return True


def wait_unsaid_on_stderr(notes: Path, seconds: float) -> bool:
    """Whether a wait of ``seconds`` from now is not covered by one another process said on this
    process's stderr already, as ``wait_unsaid`` for processes that share no memory: if so, it is
    noted as said in ``notes`` (a file beside the daemon's socket: one machine, one user, one daemon).

    The stderr is the file, pipe or terminal that descriptor 2 is (its device and inode), where
    ``warn`` writes: a job's ranks started by spawn or a launcher inherit it, and one line on it is
    read by whoever reads theirs. Ranks whose stderr is a file each (torchrun --redirects) say
    theirs each, as does a process whose ``sys.stderr`` was replaced (``warn`` prints to that).
    Whatever goes wrong (no stderr, the file cannot be written or locked) says the line: a line
    too many, not a wait in silence.
    """
    stream = _stderr_identity()
    if stream is None:
        return True
    try:
        # O_NONBLOCK: a FIFO left at that path would hold the open, then the read, for ever.
        fd = os.open(notes, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError:
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not _locked(fd):
            return True
        # The wall clock, not time.monotonic(): notes outlive a reboot (a socket folder under $HOME,
        # /var/tmp), and a monotonic time noted 30 days into the last boot lay in the future of the
        # next one, so every wait on a stderr of the same inode went unsaid.
        now = time.time()
        said = _read_notes(fd, now)
        if said.get(stream, -1.0) + SLACK >= now + seconds:
            return False
        said[stream] = max(said.get(stream, now), now + seconds)
        text = "".join(f"{dev} {ino} {until!r}\n" for (dev, ino), until in said.items())
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # and its lock


def _stderr_identity() -> tuple[int, int] | None:
    """The device and inode of the stream ``warn`` writes to, or None when it writes elsewhere
    (a replaced ``sys.stderr``) or there is none."""
    if (fd := warn_descriptor()) is None:
        return None
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _locked(fd: int) -> bool:
    """Take ``fd``'s lock within LOCK_PATIENCE; False if another process holds it that long."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def _read_notes(fd: int, now: float) -> dict[tuple[int, int], float]:
    """The waits said on each stderr (device, inode) that have not ended (with SLACK) by ``now``;
    the ones ended are dropped, so the file holds only the waits of the moment."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    said: dict[tuple[int, int], float] = {}
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            dev, ino, until = line.split()
            if float(until) + SLACK >= now:
                said[int(dev), int(ino)] = float(until)
    return said
