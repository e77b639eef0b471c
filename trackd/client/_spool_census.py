"""What waits in a spool folder, told without delivering it: ``trackd daemon status``.

Each spool file (``_spool.py``) is sorted as ``trackd sync`` and the background delivery
(``_delivery.py``) would treat it, by its name, its lock and its Hello frame: a folder holding
gigabytes costs a stat, a lock attempt and one small read per file. With the daemon's word on
what it wrote of each client (``written``), a waiting file of a client it names is looked at once
more: its frame headers are walked, and its last batch decoded, to tell a file whose every batch
the store has (a stalled daemon, resumed, wrote what the process had sent before it gave the
daemon up and spooled) from one that waits.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._paths import SET_ASIDE_SUFFIX, SPOOL_DIR_ENV
from ..errors import LocalProtocolError
from ..protocol import FRAME_HEADER_SIZE, Batch, Hello, decode_body, decode_header
from ._spool import spool_files

# A Hello holds a client id, a host and two paths; a first frame longer than this is not read (a
# damaged header can claim up to MAX_FRAME_SIZE).
MAX_HELLO_SIZE = 64 * 1024
# Frames walked (one small read each) to find a file's last batch; a file of more is counted as
# waiting, unlooked at: status stays a glance, and `trackd sync` sorts it out.
MAX_FRAMES_WALKED = 10_000


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
    # Of exited processes, and every batch in them written by the daemon already (its status
    # names their client and what it wrote): nothing to deliver; `trackd sync`, or the next
    # background delivery, removes them. After a stalled daemon resumed they were all counted as
    # waiting, and `trackd sync` then found "nothing to send" in each.
    written: SpoolFiles = field(default_factory=SpoolFiles)
    # Why the folder could not be looked at (not private, unreadable); None when it could.
    problem: str | None = None

    @property
    def files(self) -> int:
        """How many spool files the folder holds, of every kind."""
        groups = (self.waiting, self.running, self.set_aside, self.other_hosts, self.empty, self.written)
        return sum(group.files for group in groups)

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        shown: dict[str, object] = {"folder": str(self.directory)}
        if self.problem is not None:
            shown["problem"] = self.problem
        for name in ("waiting", "running", "set_aside", "other_hosts", "empty", "written"):
            files: SpoolFiles = getattr(self, name)
            shown[name] = files.as_dict(now)
        return shown


def spool_census(directory: Path, written: Mapping[str, int] | None = None, *, setting: str = SPOOL_DIR_ENV) -> SpoolCensus:
    """Count the spool files in ``directory`` by what will deliver them, reading no more than their
    Hellos; and, of a waiting file whose client ``written`` names (client id: the highest batch the
    daemon wrote of it), its frame headers and its last batch."""
    census = SpoolCensus(directory)
    try:
        paths = spool_files(directory, setting=setting)
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
            elif (hello := _hello(fd)) is not None and hello[0].host != here:
                census.other_hosts.add(info, hello[0].host)
            elif hello is not None and _written_whole(fd, info.st_size, hello, written or {}):
                census.written.add(info)
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


def _hello(fd: int) -> tuple[Hello, int] | None:
    """The Hello that starts the file, and where the frames after it start; None when it cannot be read."""
    try:
        header = os.pread(fd, FRAME_HEADER_SIZE, 0)
        size = decode_header(header) if len(header) == FRAME_HEADER_SIZE else MAX_HELLO_SIZE + 1
        if size > MAX_HELLO_SIZE:
            return None
        hello = decode_body(os.pread(fd, size, FRAME_HEADER_SIZE))
    except (OSError, LocalProtocolError):
        return None
    return (hello, FRAME_HEADER_SIZE + size) if isinstance(hello, Hello) else None


def _written_whole(fd: int, file_size: int, hello: tuple[Hello, int], written: Mapping[str, int]) -> bool:
    """Whether the daemon wrote every batch of the file already: ``written`` names its client with a
    batch at least the file's last. False whenever that cannot be told (not named, damaged,
    unreadable, more than MAX_FRAMES_WALKED frames, no batch at all): the file is counted as waiting.

    The file's batches are in the order of their numbers (the sender numbers each as it spools
    it), so its last Batch frame is its highest; SpooledWill frames come before the batches they
    name runs for. A torn last frame (its writer died in the middle of it) is not delivered either.
    """
    done = written.get(hello[0].client_id)
    if done is None:
        return False
    frames: list[tuple[int, int]] = []  # (offset of the body, its size)
    offset = hello[1]
    try:
        while offset + FRAME_HEADER_SIZE <= file_size:
            if len(frames) >= MAX_FRAMES_WALKED:
                return False
            size = decode_header(os.pread(fd, FRAME_HEADER_SIZE, offset))
            if offset + FRAME_HEADER_SIZE + size > file_size:
                break  # torn
            frames.append((offset + FRAME_HEADER_SIZE, size))
            offset += FRAME_HEADER_SIZE + size
        for start, size in reversed(frames):
            event = decode_body(os.pread(fd, size, start))
            if isinstance(event, Batch):
                return event.seq <= done
    except (OSError, LocalProtocolError):
        return False
    return False


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
