"""What waits in a spool folder, told without delivering it: ``trackd daemon status``.

Each spool file (``_spool.py``) is sorted as ``trackd sync`` and the background delivery
(``_delivery.py``) would treat it, by its name, its lock and its Hello frame only: its batches are
never read, so a folder holding gigabytes costs a stat, a lock attempt and one small read per file.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._paths import SET_ASIDE_SUFFIX
from ..errors import LocalProtocolError
from ..protocol import FRAME_HEADER_SIZE, Hello, decode_body, decode_header
from ._spool import spool_files

# A Hello holds a client id, a host and two paths; a first frame longer than this is not read (a
# damaged header can claim up to MAX_FRAME_SIZE).
MAX_HELLO_SIZE = 64 * 1024


@dataclass(slots=True)
class SpoolFiles:
    """Some spool files: how many, their bytes, and when the one written least lately was last written."""

    files: int = 0
    bytes: int = 0
    oldest_mtime: float | None = None  # seconds since the epoch, as st_mtime
    # The hosts that wrote them (only for files written on other hosts).
    hosts: set[str] = field(default_factory=set)

    def add(self, info: os.stat_result, host: str | None = None) -> None:
        self.files += 1
        self.bytes += info.st_size
        if self.oldest_mtime is None or info.st_mtime < self.oldest_mtime:
            self.oldest_mtime = info.st_mtime
        if host is not None:
            self.hosts.add(host)

    def oldest_age(self, now: float) -> float | None:
        """Seconds since the oldest was last written (None: no file)."""
        return None if self.oldest_mtime is None else max(0.0, now - self.oldest_mtime)

    def as_dict(self, now: float) -> dict[str, object]:
        shown: dict[str, object] = {"files": self.files, "bytes": self.bytes, "oldest_age_s": _rounded(self.oldest_age(now))}
        if self.hosts:
            shown["hosts"] = sorted(self.hosts)
        return shown


@dataclass(slots=True)
class SpoolCensus:
    """The spool files of one folder, sorted by what will deliver them."""

    directory: Path
    # Of exited processes, written on this host: the next trackd process to connect delivers them
    # in the background (once it has run ORPHAN_DELIVERY_DELAY), and `trackd sync` does.
    waiting: SpoolFiles = field(default_factory=SpoolFiles)
    # Locked: their processes are alive and send them themselves (or a delivery holds one now).
    running: SpoolFiles = field(default_factory=SpoolFiles)
    # Renamed to end in SET_ASIDE_SUFFIX (damaged, unreadable): only `trackd sync` tries them.
    set_aside: SpoolFiles = field(default_factory=SpoolFiles)
    # Written on another host (a spool folder shared over NFS): left to `trackd sync` there, or --all-hosts.
    other_hosts: SpoolFiles = field(default_factory=SpoolFiles)
    # Empty and not locked: nothing to deliver; left where the folder refuses their removal
    # (read-only), they were counted as waiting, and status said to run `trackd sync` for ever.
    empty: SpoolFiles = field(default_factory=SpoolFiles)
    # Why the folder could not be looked at (not private, unreadable); None when it could.
    problem: str | None = None

    @property
    def files(self) -> int:
        """How many spool files the folder holds, of every kind."""
        return self.waiting.files + self.running.files + self.set_aside.files + self.other_hosts.files + self.empty.files

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        shown: dict[str, object] = {"folder": str(self.directory)}
        if self.problem is not None:
            shown["problem"] = self.problem
        for name in ("waiting", "running", "set_aside", "other_hosts", "empty"):
            files: SpoolFiles = getattr(self, name)
            shown[name] = files.as_dict(now)
        return shown


def spool_census(directory: Path) -> SpoolCensus:
    """Count the spool files in ``directory`` by what will deliver them, reading no more than their Hellos."""
    census = SpoolCensus(directory)
    try:
        paths = spool_files(directory)
    except OSError as exc:  # PermissionError: not private, so nothing in it is delivered
        census.problem = str(exc)
        return census
    here = socket.gethostname()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # delivered and removed since it was listed
        try:
            info = os.fstat(fd)
            if _held(fd):
                census.running.add(info)
            elif info.st_size == 0:
                census.empty.add(info)
            elif path.name.endswith(SET_ASIDE_SUFFIX):
                census.set_aside.add(info)
            elif (host := _hello_host(fd)) is not None and host != here:
                census.other_hosts.add(info, host)
            else:
                census.waiting.add(info)  # a file with no readable Hello too: `trackd sync` reports it
        finally:
            os.close(fd)
    return census


def _held(fd: int) -> bool:
    """Whether a process holds the spool file's lock (its writer, alive; or a delivery under way).

    Tried as a shared lock, held for no longer than this call: a delivery trying its exclusive lock
    in that instant takes the file for a live process's and leaves it for the next one.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _hello_host(fd: int) -> str | None:
    """The host named by the Hello that starts the file; None when it cannot be read."""
    try:
        header = os.pread(fd, FRAME_HEADER_SIZE, 0)
        size = decode_header(header) if len(header) == FRAME_HEADER_SIZE else MAX_HELLO_SIZE + 1
        if size > MAX_HELLO_SIZE:
            return None
        hello = decode_body(os.pread(fd, size, FRAME_HEADER_SIZE))
    except (OSError, LocalProtocolError):
        return None
    return hello.host if isinstance(hello, Hello) else None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
