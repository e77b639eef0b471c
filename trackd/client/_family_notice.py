"""One "waiting" line for the processes whose exits wait together for one stalled daemon.

A job's rank that forks DataLoader-style workers (``os.fork``, a fork ``Pool``) exits with each of
them waiting for the daemon: 4 ranks with 2 workers each printed 12 "waiting up to N s more" lines
for one SIGSTOPped daemon, and 8 x 8 would print 72. Ranks that are processes of their own (a
spawn ``Pool``, ``mp.spawn``, a launcher's ``python`` per rank) printed two lines each on the job's
one stderr, the same "waiting" line four times before four outcomes. Each process still says what
became of its own events (its count, the spool file); the wait is said once for the processes that
wait together: a fork family (``wait_unsaid``), or processes writing to one stderr
(``wait_unsaid_on_stderr``).

A wait said covers others only while the process that said it waits (``wait_ended``): a process
whose wait ended early (its events delivered 2 s into "waiting up to 59 s more") left a note that
silenced the "waiting" line of a later, separate stall for the rest of those 59 s, though nobody
waited any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import stat
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._peer import process_exited, process_state
from ._outbox import warn_descriptor

if TYPE_CHECKING:
    from pathlib import Path

# Until when (time.monotonic(), one clock for every process of the machine) a wait said by a
# process of this family lasts, and the pid of the process that said it (whose wait's end ends the note
# there). Shared with every process forked after this module loaded (an anonymous mmap is
# MAP_SHARED): the client's modules load at its first run, before its workers are forked. A process
# started afresh (spawn, exec) has its own: see wait_unsaid_on_stderr.
_FAMILY_NOTE = struct.Struct("dq")
_ANNOUNCED_UNTIL = mmap.mmap(-1, _FAMILY_NOTE.size)
# A wait that ends this little after the said one is covered by it: workers joined together start
# their waits within a fraction of a second of each other.
SLACK = 0.5
# How long a process tries for the notes file's lock before it says its wait anyway: the others
# hold it for one read and one write. A holder stopped in between (SIGSTOP) costs a line, not the exit.
LOCK_PATIENCE = 0.2
# The most of the notes file read, and the most notes kept in it: a note is one line of some 60
# bytes, and only the waits under way are kept. A larger file (planted) is read that far and rewritten.
MAX_NOTES_BYTES = 64 * 1024
MAX_NOTES = 512

# The notes files in which this process noted a wait it said, with its pid (a forked child's is
# another): its wait's end ends the note there (wait_ended).
_noted: set[tuple[str, int]] = set()


def wait_unsaid(seconds: float) -> bool:
    """Whether a wait of ``seconds`` from now is not covered by one another process of this family
    said already: if so, it is noted as said (this process says it). Two processes can both find it
    unsaid in the same instant: two lines, as before, not none."""
    now = time.monotonic()
    until, _ = _FAMILY_NOTE.unpack_from(_ANNOUNCED_UNTIL, 0)
    if until + SLACK >= now + seconds:
        return False
    _FAMILY_NOTE.pack_into(_ANNOUNCED_UNTIL, 0, now + seconds, os.getpid())
    return True


def wait_ended(notes: Path) -> None:
    """This process's wait, said or not, ended (its events delivered, or given up): a wait it said
    covers the waits of others, in its family and on its stderr (``notes``), only as far as now.

    A note left until its wait's planned end silenced a later, separate stall's "waiting" line for
    the rest of it. Now the note ends with the wait (and SLACK after it, as a wait given up on time
    did). Another process's note is left alone; a note this process cannot change (the lock held,
    the file gone) lasts until the wait it noted would have ended, or until its process exits.
    """
    now, pid = time.monotonic(), os.getpid()
    until, by = _FAMILY_NOTE.unpack_from(_ANNOUNCED_UNTIL, 0)
    if by == pid and until > now:
        _FAMILY_NOTE.pack_into(_ANNOUNCED_UNTIL, 0, now, pid)
    if (str(notes), pid) not in _noted:
        return
    _noted.discard((str(notes), pid))
    with contextlib.suppress(OSError), _locked_notes(notes) as fd:
        if fd is not None:
            now = time.time()
            said = _read_notes(fd, now)
            _write_notes(fd, {key: (min(until, now), started) if key[2] == pid else (until, started)
                              for key, (until, started) in said.items()})


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
    with contextlib.suppress(OSError), _locked_notes(notes) as fd:
        if fd is None:
            return True
        # The wall clock, not time.monotonic(): notes outlive a reboot (a socket folder under $HOME,
        # /var/tmp), and a monotonic time noted 30 days into the last boot lay in the future of the
        # next one, so every wait on a stderr of the same inode went unsaid.
        now, pid = time.time(), os.getpid()
        said = _read_notes(fd, now)
        # A note of this process's own is of a wait that ended (one it could not end there): not this one's.
        others = [until for (dev, ino, by), (until, _) in said.items() if (dev, ino) == stream and by != pid]
        if any(until + SLACK >= now + seconds for until in others):
            return False
        said[stream[0], stream[1], pid] = (now + seconds, process_state(pid)[1])
        if _write_notes(fd, said):
            _noted.add((str(notes), pid))
    return True


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


@contextlib.contextmanager
def _locked_notes(notes: Path) -> Iterator[int | None]:
    """The notes file open and locked, or None when it cannot be (then the line is said)."""
    try:
        # O_NONBLOCK: a FIFO left at that path would hold the open, then the read, for ever.
        fd = os.open(notes, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError:
        yield None
        return
    try:
        usable = stat.S_ISREG(os.fstat(fd).st_mode) and _locked(fd)
    except OSError:
        usable = False  # flock refused (ENOLCK on some network file systems)
    try:
        yield fd if usable else None
    finally:
        os.close(fd)  # and its lock


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


# A note: the stderr's device and inode, and the pid of the process that said the wait on it
# (0 in a note of an older client, which named none) -> until when (time.time()), and that
# process's start time (process_state; None: unknown).
Notes = dict[tuple[int, int, int], tuple[float, int | None]]


def _read_notes(fd: int, now: float) -> Notes:
    """The waits said on each stderr that are under way at ``now``: not ended (with SLACK), and
    their process still runs (it may have been killed while it waited). The others are dropped,
    so the file holds only the waits of the moment."""
    data = b""
    while len(data) < MAX_NOTES_BYTES and (chunk := os.read(fd, MAX_NOTES_BYTES - len(data))):
        data += chunk
    said: Notes = {}
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            dev, ino, until, *by = line.split()
            pid, started = (int(by[0]), None if by[1] == "-" else int(by[1])) if len(by) == 2 else (0, None)
            if float(until) + SLACK >= now and (pid <= 0 or not process_exited(pid, started)):
                said[int(dev), int(ino), pid] = (float(until), started)
    return said


def _write_notes(fd: int, said: Notes) -> bool:
    """Replace the file's notes with ``said`` (the MAX_NOTES that end last); False if it failed."""
    kept = sorted(said.items(), key=lambda item: item[1][0])[-MAX_NOTES:]
    text = "".join(
        f"{dev} {ino} {until!r} {pid} {'-' if started is None else started}\n" for (dev, ino, pid), (until, started) in kept
    )
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    except OSError:
        return False
    return True
