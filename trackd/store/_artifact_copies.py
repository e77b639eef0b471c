"""A large artifact copied ahead of its write: into a staging folder of the store, then renamed into place.

An artifact over the inline limit travels as a path, and the daemon copies the file. Copied inside
the store write, a 2 GB checkpoint held that write, and with it every other client's points and
flushes, for the seconds the copy took. So the daemon copies such a file first, on a thread of
its own (``ArtifactCopy.run``), into a staging folder at the store's root that MLflow never reads
(``.trackd-<hex>.trash``, as new runs are built in); the write then only renames it into the
run's artifact folder (``ArtifactCopy.place``), so the artifact still appears in one step, when
its batch is written and not before. A daemon killed mid-copy leaves a staging folder, removed
an hour later as any other (``remove_stale_staging``, which leaves the folders of copies under
way or waiting for their write alone); its client, never acknowledged, resends.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
from stat import S_IMODE, S_ISREG

from ..errors import InvalidArgument
from . import _layout as layout
from ._format import FILE_MODE, copy_file_atomic
from ._staging import hold_staging, release_staging

# Bytes per copy call: the copy looks for a stop request (a daemon shutting down) between calls,
# so it stops within ~30 ms at a disk's 2 GB/s.
COPY_CHUNK = 64 * 1024 * 1024
# Bytes per read where the kernel cannot copy between the files (macOS, BSD).
READ_CHUNK = 1024 * 1024
_STAGED_FILE_NAME = "artifact"
# The bits of a file's mode an artifact keeps: its permissions, not setuid, setgid or sticky (a
# store may be shared with a group).
ARTIFACT_PERMISSIONS = 0o777
# The ways the daemon copies a file, the cheapest first; each copies at the files' positions, so
# the next takes over where one stopped. copy_file_range(2) makes a reflink where the filesystem
# can (XFS, btrfs: same filesystem; no data copied, no room taken: the client's copy at the call
# was often a reflink of the checkpoint already), a server-side copy on NFS 4.2, and an in-kernel
# copy elsewhere; sendfile(2) copies in the kernel where copy_file_range cannot (another
# filesystem on an older kernel); reads and writes everywhere else (macOS, BSD).
COPY_FILE_RANGE, SENDFILE, READ_WRITE = "copy_file_range", "sendfile", "read and write"
# The kernel refused this way for this pair of files (not a failure of the disk): try the next.
_NOT_THIS_WAY = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP, errno.EXDEV, errno.ETXTBSY})


class ArtifactCopy:
    """One artifact file to copy into the store at ``root`` before the write that places it.

    ``run`` copies (a copier thread), ``place`` renames the copy into place (the writer thread,
    after ``run`` returned), ``discard`` removes a copy no write placed. An error of the copy is
    kept and raised by ``raise_error`` (``place`` too), so the write reports it as it reported a
    copy that failed inside it: to the client that logged the artifact, or, when the store's disk
    refused the staged copy (full, read-only), as the store refusing writes. The source failing
    to read (an I/O error) is the artifact's failure, never the store's (``InvalidArgument``).
    """

    def __init__(
        self, root: str, run_id: str, path: str, source_path: str, stamp: tuple[int, int] | None = None,
        mode: int | None = None,
    ) -> None:
        self.root = root
        self.run_id = run_id
        self.path = path
        self.source_path = source_path
        # (size, mtime_ns) of the source when the client logged it; None from an older client's spool.
        self.stamp = stamp
        # The source's st_mode when the client logged it, whose permission bits the copy gets (as
        # MLflow's shutil.copy2 does); None from an older client's spool: the default mode.
        self.mode = mode
        # The source's size once opened, and the bytes copied so far (for the daemon's status).
        self.size = 0
        self.copied = 0
        self.placed = False
        # The ways to copy, tried in order (``copy_ways``); a benchmark sets the old one to compare.
        self.ways = copy_ways()
        self._staging: str | None = None
        self._error: Exception | None = None

    @property
    def needed(self) -> bool:
        """Whether a copy must still be made before a write can place this artifact."""
        return not self.placed and self._staging is None and self._error is None

    def run(self, stop: threading.Event) -> bool:
        """Copy the source into a new staging folder, keeping an error for ``place``.

        Returns False, with nothing kept, when ``stop`` was set before the copy finished.
        """
        self.copied = 0
        staging = None
        try:
            check_artifact_source(self.source_path, self.path, self.run_id)
            # What was opened is checked again, and the copy stops at its size then: a device
            # swapped in since the check (/dev/zero), or a file growing meanwhile, no longer copies
            # until the disk is full. (Not O_NONBLOCK: it would make open() fail on a file under a
            # lease instead of waiting for it.) A file on a stalled mount blocks here, not in a write.
            try:
                source = open(self.source_path, "rb")  # closed by the with below
            except OSError as exc:
                raise unreadable_source(self.source_path, self.path, self.run_id, exc) from None
            with source:
                info = os.fstat(source.fileno())
                if not S_ISREG(info.st_mode):
                    raise InvalidArgument(_not_a_file(self.source_path, self.path, self.run_id))
                self._check_unchanged(info, self.stamp, "after log_artifact and before the daemon copied it")
                self.size = info.st_size
                if stop.is_set():
                    return False
                # Before the store's first write the root may not exist yet (the writer makes the
                # rest of it, experiment 0 and .trash, as it does for any root without them).
                os.makedirs(self.root, exist_ok=True)
                staging = layout.staging_dir_path(self.root)
                os.mkdir(staging)
                hold_staging(staging)  # however long the copy and its wait for the write take
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                target = os.open(os.path.join(staging, _STAGED_FILE_NAME), flags, FILE_MODE)
                try:
                    if self.mode is not None:
                        os.fchmod(target, S_IMODE(self.mode) & ARTIFACT_PERMISSIONS)
                    finished = self._copy(source.fileno(), target, stop)
                finally:
                    os.close(target)
                if finished:
                    self._check_unchanged(os.fstat(source.fileno()), (info.st_size, info.st_mtime_ns), "while the daemon copied it")
                    self._check_read_whole(source.fileno())
        except Exception as exc:  # OSError, InvalidArgument; anything else is reported the same way
            finished, self._error = True, exc
        if staging is not None:
            if finished and self._error is None:
                self._staging = staging
            else:
                shutil.rmtree(staging, ignore_errors=True)
                release_staging(staging)
        return finished

    def place(self, target: str, temp_dir: str) -> None:
        """Rename the copy to ``target``; raise the copy's error instead if it failed.

        The error is raised once: a write the store refused (disk full) is tried again, and so
        is this copy then (``needed``). A copy placed already (its write was tried again after a
        later item was refused) is left as it is.
        """
        if self.placed:
            return
        self.raise_error()
        assert self._staging is not None, "place() before run() finished"
        staged = os.path.join(self._staging, _STAGED_FILE_NAME)
        try:
            os.replace(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The run's artifact location is on another filesystem than the store: a copy after all.
            copy_file_atomic(staged, target, temp_dir, S_IMODE(os.stat(staged).st_mode))
        self.placed = True
        self.discard()

    def raise_error(self) -> None:
        """Raise the copy's error, if it failed; once (see ``place``)."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def discard(self) -> None:
        """Remove the copy if no write placed it (its batch was refused, or the daemon stops)."""
        staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            release_staging(staging)

    def _check_unchanged(self, info: os.stat_result, expected: tuple[int, int] | None, when: str) -> None:
        """Refuse a source whose size or mtime is not ``expected`` (not checked when None)."""
        if expected is None or (info.st_size, info.st_mtime_ns) == tuple(expected):
            return
        # Same size: only the mtime tells, and a touch (or a copy tool setting it) moves it too.
        size = (
            f"{expected[0]} bytes, now {info.st_size}" if info.st_size != expected[0]
            else f"same size, modification time {expected[1]} ns, now {info.st_mtime_ns} ns"
        )
        raise InvalidArgument(
            f"Artifact {self.path!r} of run {self.run_id} was not stored: its source {self.source_path!r} changed "
            f"{when} ({size}). A large file is copied after the call returns: keep it unchanged until "
            "flush() returns, or log it once it is final."
        )

    def _check_read_whole(self, source: int) -> None:
        """Refuse a source that holds more than the size it had when opened, which is all the copy took.

        A /proc or /sys file is a regular file of size 0 whose reads return its content: a record
        by path to one (a raw-protocol client; trackd's own sends such files inline) was stored
        as an empty artifact, without a word.
        """
        if self._read_probe(source):
            raise InvalidArgument(
                f"Invalid source for artifact {self.path!r} of run {self.run_id}: {self.source_path!r} holds more "
                f"than the {self.size} bytes its size said when it was opened (a /proc or /sys file, whose size is "
                "not its content); expected a regular file. Log its content with log_text, or copy it to a "
                "regular file first."
            )

    def _read_probe(self, source: int) -> bytes:
        """A byte of the source past what was copied; its read error is the artifact's, never the store's."""
        try:
            return os.pread(source, 1, self.copied)
        except OSError as exc:
            raise unreadable_source(self.source_path, self.path, self.run_id, exc) from None

    def _copy(self, source: int, target: int, stop: threading.Event) -> bool:
        """Copy in chunks until the end of ``source`` or its size at open (True), or until ``stop``
        is set (False); the first of ``ways`` first, the next when the kernel refuses one."""
        ways = list(self.ways)
        while not stop.is_set():
            chunk = min(COPY_CHUNK, self.size - self.copied)
            if chunk <= 0:
                return True
            try:
                count = _copy_chunk(ways[0], source, target, chunk)
            except _SourceReadError as failed:
                raise unreadable_source(self.source_path, self.path, self.run_id, failed.error) from None
            except OSError as exc:
                if ways[0] == READ_WRITE:
                    raise  # a write of the staged copy (a read's error is the source's, above): the store's disk
                # This way cannot copy these files (_NOT_THIS_WAY): the next. Or it failed, and
                # copy_file_range and sendfile do not say whether the source or the staged copy did:
                # reads and writes from where it stopped (both files' positions) do. A probe of one
                # byte there read a good byte before a bad block further on, and took the source's
                # I/O error for the store's disk failing: every client's writes held.
                ways = ways[1:] if exc.errno in _NOT_THIS_WAY and len(ways) > 1 else [READ_WRITE]
                continue
            if not count:
                # The end of the file (it shrank since it was opened), or a way that copies nothing
                # of this file (copy_file_range of some special files): the next way says which.
                if len(ways) == 1:
                    return True
                ways.pop(0)
                continue
            self.copied += count
        return False


def copy_ways() -> tuple[str, ...]:
    """The ways ``ArtifactCopy`` tries, in order, on this platform."""
    return tuple(
        way for way, available in (
            (COPY_FILE_RANGE, hasattr(os, "copy_file_range")),
            (SENDFILE, sys.platform.startswith("linux")),
            (READ_WRITE, True),
        ) if available
    )


def _copy_chunk(way: str, source: int, target: int, chunk: int) -> int:
    """Copy up to ``chunk`` bytes ``way`` from the position of ``source`` to that of ``target``;
    the bytes copied (0: none, at the end of the file)."""
    if way == COPY_FILE_RANGE:
        return os.copy_file_range(source, target, chunk)
    if way == SENDFILE:
        return os.sendfile(target, source, None, chunk)
    count = 0
    while count < chunk:
        try:
            data = os.read(source, min(READ_CHUNK, chunk - count))
        except OSError as exc:
            raise _SourceReadError(exc) from None
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        count += len(data)
    return count


class _SourceReadError(Exception):
    """A read of the source failed, in the way of reads and writes (the one way that tells which
    file failed); ``error``: the read's OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def check_artifact_source(source_path: str, relative: str, run_id: str) -> None:
    """Refuse a source that is not a regular file the daemon can read, naming the artifact."""
    # shutil.copyfile refuses a FIFO but would copy /dev/zero until the disk is full.
    try:
        mode = os.stat(source_path).st_mode
    except OSError as exc:
        raise unreadable_source(source_path, relative, run_id, exc) from None
    if not S_ISREG(mode):
        raise InvalidArgument(_not_a_file(source_path, relative, run_id))


def unreadable_source(source_path: str, relative: str, run_id: str, exc: OSError) -> InvalidArgument:
    """The artifact's failure for a source the daemon could not open or read (``exc``, an I/O error
    of a flaky disk, /proc/self/mem): the client named that file, so it is never the store's fault."""
    return InvalidArgument(
        f"Invalid source for artifact {relative!r} of run {run_id}: {source_path!r} cannot be "
        f"read ({exc.strerror})."
    )


def _not_a_file(source_path: str, relative: str, run_id: str) -> str:
    return (
        f"Invalid source for artifact {relative!r} of run {run_id}: {source_path!r} is not a "
        "regular file (a folder, FIFO or device); expected a file to copy."
    )

