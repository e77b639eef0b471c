"""The spool: where a client keeps its events while no daemon can be reached.

A spool file holds the client's Hello frame, then the Batch frames it could not deliver, exactly
as they would have gone over the socket. The client that wrote it replays it when a daemon
answers again; ``trackd sync`` (or the next client that connects) delivers the spool of a
process that exited first. Replaying is safe to repeat: the daemon skips batches it already
holds, by the client id and sequence numbers in the frames.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .._paths import check_private_directory, ensure_private_directory, temp_directory
from .._struct import Value
from ..errors import DaemonUnavailable, LocalProtocolError, RemoteProtocolError
from ..protocol import (
    FRAME_HEADER_SIZE,
    NEED_DATA,
    BadBatch,
    Batch,
    Connection,
    ConnectionClosed,
    ErrorReply,
    Event,
    Flush,
    FlushDone,
    Hello,
    Rejected,
    decode_body,
    decode_header,
    encode_frame,
)
from ._ledger import refused_message
from ._outbox import client_logger, warn
from ._transport import handshake, make_hello

SPOOL_DIR_ENV = "TRACKD_SPOOL_DIR"
SPOOL_SUFFIX = ".spool"
# Tries to open and lock a new spool file that `trackd sync` keeps removing as empty meanwhile.
MAX_OPEN_TRIES = 10
# A spool file is read this many bytes at a time, one frame after another: sending one again holds
# this buffer and the frame being sent, never the file. A long outage at a high rate spools
# hundreds of MB to GB, and read whole (twice over, as bytes and as frames) it was the RSS of the
# training process that replayed it, and of `trackd sync`.
SPOOL_READ_SIZE = 256 * 1024


def default_spool_dir() -> Path:
    """``$TRACKD_SPOOL_DIR``, else ``$XDG_CACHE_HOME/trackd/spool`` (``~/.cache/...``), else the temp dir."""
    explicit = os.environ.get(SPOOL_DIR_ENV)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache:
        return Path(cache) / "trackd" / "spool"
    try:
        home: Path | None = Path.home()
    except RuntimeError:
        # No HOME and a uid the passwd file does not list: a container run with `--user 12345`
        # (or OpenShift's random uid) and a clean environment. Every client used to raise here.
        home = None
    if home is not None and os.access(home, os.W_OK):
        return home / ".cache" / "trackd" / "spool"
    return Path(temp_directory()) / f"trackd-spool-{os.getuid()}"


def spool_file(directory: Path, client_id: str) -> Path:
    """Where the client ``client_id`` spools (its runs' ends too: the daemon waits while it exists)."""
    return directory / f"{client_id}{SPOOL_SUFFIX}"


class Spool:
    """One client's spool file, locked while the client lives so ``trackd sync`` leaves it alone."""

    def __init__(self, directory: Path, hello: Hello) -> None:
        self.path = spool_file(directory, hello.client_id)
        self._hello = hello
        self._fd = -1
        self.last_seq = 0
        self.records = 0
        # (seq, records) of each batch in the file, to count what is lost if it cannot be read back.
        self._counts: list[tuple[int, int]] = []
        # Batches in the file the daemon refused whole (BadBatch): never sent again.
        self.refused: set[int] = set()

    def append(self, batches: list[tuple[int, bytes, int]]) -> None:
        """Append (seq, frame, record count) batches, creating the file with its Hello first."""
        if not batches:
            return
        if self._fd < 0:
            ensure_private_directory(self.path.parent, variable=SPOOL_DIR_ENV)
            self._fd = self._open_locked()
        size = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, b"".join(frame for _, frame, _ in batches))
        except OSError:
            # A torn frame would make the whole spool unreadable: cut back to the last whole one.
            os.ftruncate(self._fd, size)
            raise
        self.last_seq = max(self.last_seq, max(seq for seq, _, _ in batches))
        self.records += sum(count for _, _, count in batches)
        self._counts.extend((seq, count) for seq, _, count in batches)

    def _open_locked(self) -> int:
        """The spool file, created with its Hello if new, open for appending and locked."""
        for _ in range(MAX_OPEN_TRIES):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:
                    # `trackd sync` removed it as empty between the open and the lock: what went
                    # into this descriptor would go to a deleted file.
                    os.close(fd)
                    continue
                if os.fstat(fd).st_size == 0:
                    try:
                        _write_all(fd, encode_frame(self._hello))
                    except OSError:
                        # Neither a torn Hello nor an empty file: either would be reported by every
                        # `trackd sync` as a spool it cannot deliver, also after this client
                        # delivered every event to a daemon that came back.
                        os.ftruncate(fd, 0)
                        with contextlib.suppress(OSError):
                            self.path.unlink()
                        raise
            except BaseException:
                # Closing releases the lock: kept open, the next try's flock() on a new descriptor
                # would wait for ever (a full disk while no daemon answers hung the sender thread).
                os.close(fd)
                raise
            return fd
        raise OSError(errno.EAGAIN, f"Spool file {self.path} was removed {MAX_OPEN_TRIES} times as it was created")

    def reader(self) -> SpoolReader:
        """The file, to be read again from its start one frame at a time.

        FileNotFoundError when it is gone, or ``path`` names another file than the one this
        client writes (removed, and made anew by someone else): that one is not ours to send.
        """
        file = open(self.path, "rb", buffering=SPOOL_READ_SIZE)  # closed by the reader
        try:
            if self._fd < 0 or not _same_file(file.fileno(), self._fd):
                raise FileNotFoundError(errno.ENOENT, "replaced since this client wrote it", str(self.path))
            return SpoolReader(file, self.path)
        except BaseException:
            file.close()
            raise

    def batches_after(self, seq: int) -> int:
        """Batches in the file after ``seq``."""
        return sum(1 for batch_seq, _ in self._counts if batch_seq > seq)

    def records_after(self, seq: int) -> int:
        """Records in the batches after ``seq``."""
        return sum(count for batch_seq, count in self._counts if batch_seq > seq)

    def cut(self, offset: int, seq: int) -> int:
        """Cut the file back to its first ``offset`` bytes, which end with batch ``seq`` (0: none),
        because what follows cannot be read; returns how many records that drops."""
        lost = self.records_after(seq)
        os.ftruncate(self._fd, offset)
        self._counts = [(batch_seq, count) for batch_seq, count in self._counts if batch_seq <= seq]
        self.records -= lost
        self.last_seq = seq
        return lost

    def refuse(self, seq: int) -> int:
        """Skip batch ``seq`` from now on (the daemon will never write it); returns its records (0: not in the file)."""
        records = sum(count for batch_seq, count in self._counts if batch_seq == seq)
        self._counts = [(batch_seq, count) for batch_seq, count in self._counts if batch_seq != seq]
        self.records -= records
        if records:
            self.refused.add(seq)
        return records

    def remove(self) -> None:
        """Delete the spool once the daemon acknowledged everything in it."""
        if self._fd >= 0:
            # By its path only while that names this client's file (see reader).
            if _names(self.path, self._fd):
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(self._fd)
            self._fd = -1
        self.last_seq = 0
        self.records = 0
        self._counts = []
        self.refused = set()

    def abandon(self) -> None:
        """In a forked child: forget the parent's spool without touching it."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class SpoolReader:
    """A spool file read one frame at a time: its Hello when opened, then ``batches()``.

    At most SPOOL_READ_SIZE bytes and one frame are held at a time. A torn last frame (its
    writer died in the middle of it) ends the file; a damaged frame raises RemoteProtocolError
    naming the byte it starts at, which ``offset`` holds then.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        """Read the Hello from ``file`` (open for reading at its start; closed by ``close()``)."""
        self.path = path
        self._file = file
        # Where the last whole frame read ends.
        self.offset = 0
        first = self._next_frame()
        if first is None:
            raise RemoteProtocolError(f"Spool file {path} is empty or damaged.")
        if not isinstance(first[0], Hello):
            raise RemoteProtocolError(f"Spool file {path} does not start with a Hello frame.")
        self.hello: Hello = first[0]

    def batches(self) -> Iterator[tuple[int, int, bytes]]:
        """The Batch frames after the Hello, in order, as (seq, records, frame)."""
        while (item := self._next_frame()) is not None:
            event, frame = item
            if isinstance(event, Batch):
                yield event.seq, event.events, frame

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _next_frame(self) -> tuple[Event, bytes] | None:
        """The next frame, decoded and as bytes; None at the end of the file or at a torn last frame."""
        header = self._file.read(FRAME_HEADER_SIZE)
        try:
            if len(header) < FRAME_HEADER_SIZE:
                return None
            size = decode_header(header)  # at most MAX_FRAME_SIZE: the bound on what is read at once
            body = self._file.read(size)
            if len(body) < size:
                return None  # the writer died in the middle of this frame
            event = decode_body(body)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"Spool file {self.path} is damaged at byte {self.offset}: {exc}") from exc
        self.offset += FRAME_HEADER_SIZE + size
        return event, header + body


class SyncResult(Value):
    """What delivering one spool file did (filled in as it goes)."""

    __slots__ = ("path", "client_id", "batches", "skipped", "other_host", "rejected", "error", "empty", "gone")

    def __init__(
        self, path: Path, client_id: str = "", batches: int = 0, skipped: bool = False,
        rejected: list[str] | None = None, error: str | None = None, other_host: str = "", empty: bool = False,
        gone: bool = False,
    ) -> None:
        self.path = path
        self.client_id = client_id
        self.batches = batches
        self.skipped = skipped  # its client is alive and delivers it itself
        self.empty = empty  # removed: its client could not write even its Hello (a full disk), so it holds nothing
        self.gone = gone  # delivered meanwhile by another `trackd sync` (or its own process)
        self.other_host = other_host  # left alone: written on that host (see deliver_spool)
        self.rejected: list[str] = [] if rejected is None else rejected
        self.error = error


def deliver_spool(path: Path, socket_path: Path, *, timeout: float = 60.0, any_host: bool = False) -> SyncResult:
    """Send one spool file to the daemon, wait until it is written, then delete the file.

    A spool written on another host is left alone unless ``any_host``: with a home folder shared
    over NFS every node sees every node's spools, and a store path local to that node (scratch
    disk) would be made anew on this one, the events "delivered" where nobody looks.
    """
    result = SyncResult(path)
    with _locked(path) as fd:
        if fd is None:
            result.skipped = True  # its client is alive and will deliver it itself
            return result
        if os.fstat(fd).st_size == 0:
            # Left by a client that could not write its first frame (Spool.append removes it now;
            # a process killed between creating and writing it leaves one): nothing to deliver.
            path.unlink()
            result.empty = True
            return result
        sent: dict[int, int] = {}  # seq -> records, of the batches sent on any try
        refused: dict[int, str] = {}
        while True:
            # Read from the descriptor that holds the lock, so the file sent is the file locked.
            os.lseek(fd, 0, os.SEEK_SET)
            with SpoolReader(open(fd, "rb", buffering=SPOOL_READ_SIZE, closefd=False), path) as reader:
                result.client_id = reader.hello.client_id
                if not any_host and reader.hello.host != socket.gethostname():
                    result.other_host = reader.hello.host
                    return result
                before = len(refused)
                try:
                    _send_spool(reader, socket_path, result, sent, refused, timeout=timeout)
                    break
                except DaemonUnavailable:
                    # The daemon refused a batch whole (BadBatch) and closed the connection: once
                    # more without it (each try refuses one more, so this ends). It used to fail
                    # here, and every later sync sent the file again, refused again.
                    if len(refused) == before:
                        raise
        path.unlink()
    result.rejected.extend(refused.values())
    return result


def _send_spool(
    reader: SpoolReader, socket_path: Path, result: SyncResult, sent: dict[int, int], refused: dict[int, str], *, timeout: float
) -> None:
    """Send the batches of ``reader`` that the daemon does not hold, then wait until it wrote them.

    ``sent`` counts the records of each batch sent. ``refused`` holds the batches the daemon
    refused whole, with the sentence that says so: not sent, and added to when the daemon names
    another (it closes the connection then).
    """
    # A Hello of this version: the frames decoded with today's protocol, so they are valid now,
    # and a spool written by an older trackd is delivered after an upgrade instead of refused.
    hello = make_hello(reader.hello.client_id, reader.hello.store_root)
    transport, protocol, welcome = handshake(socket_path, hello, timeout=timeout)
    try:
        # Bounded like the wait below: a daemon that stops reading (SIGSTOP, a store whose
        # backlog is full) held `trackd sync --timeout 3` in a send for ever, and the lock with it.
        for seq, records, frame in reader.batches():
            if seq > welcome.resume_seq and seq not in refused:
                transport.send(frame, timeout=timeout)
                sent[seq] = records
                result.batches = len(sent.keys() - refused.keys())
                # Its acks are read as they come: a daemon stops reading a connection that leaves
                # more than a bound of replies unread, and the send above would then wait in vain.
                while (data := transport.receive_available()) is not None:
                    protocol.receive_data(data)
                    _take_replies(protocol, reader.path, result, refused, sent)
        transport.send(protocol.send(Flush(request_id=1)), timeout=timeout)
        deadline = time.monotonic() + timeout
        while not _take_replies(protocol, reader.path, result, refused, sent):
            if time.monotonic() > deadline:
                raise DaemonUnavailable(f"The daemon did not confirm {reader.path} within {timeout:g} s.")
            data = transport.receive(max(deadline - time.monotonic(), 0.01))
            if data is not None:
                protocol.receive_data(data)
    finally:
        transport.close()


def _take_replies(protocol: Connection, path: Path, result: SyncResult, refused: dict[int, str], sent: dict[int, int]) -> bool:
    """Act on the replies ``protocol`` holds; True once the FlushDone came (the spool is written)."""
    while (event := protocol.next_event()) is not NEED_DATA:
        if isinstance(event, BadBatch):
            records = sent.get(event.seq, 0)
            refused[event.seq] = refused_message(event.seq, records, event.message)
        elif isinstance(event, Rejected):
            result.rejected.append(f"{event.item}: {event.message}")
        elif isinstance(event, FlushDone):
            result.batches = len(sent.keys() - refused.keys())
            return True
        elif isinstance(event, (ErrorReply, ConnectionClosed)):
            raise DaemonUnavailable(f"The daemon closed the connection while {path} was delivered ({event!r}).")
    return False


def spool_files(directory: Path) -> list[Path]:
    """The spool files in ``directory``, in name order; none when it does not exist.

    PermissionError when another user owns the folder or may write to it: a spool file names the
    store its events go to, and may ask the daemon to copy a file into it, so one planted there
    (``/tmp/trackd-spool-<uid>/``, the fallback without a writable home, made first by someone
    else) had this user's daemon copy this user's files into a store the planter reads.
    """
    if not directory.is_dir():
        return []
    check_private_directory(directory, variable=SPOOL_DIR_ENV)
    return sorted(directory.glob(f"*{SPOOL_SUFFIX}"))


def sync_spools(
    directory: Path, socket_path: Path, *, timeout: float = 60.0, exclude: Path | None = None, any_host: bool = False,
) -> list[SyncResult]:
    """Deliver every spool file in ``directory`` whose client is gone (and, unless ``any_host``,
    that was written on this host); errors are reported per file."""
    results = []
    for path in spool_files(directory):
        if exclude is not None and path == exclude:
            continue
        try:
            results.append(deliver_spool(path, socket_path, timeout=timeout, any_host=any_host))
        except FileNotFoundError:
            # Delivered and removed since it was listed: by a `trackd sync` run at the same time,
            # which held its lock, or by its own process. It used to be reported as not delivered.
            results.append(SyncResult(path, gone=True))
        except (DaemonUnavailable, RemoteProtocolError, OSError) as exc:
            results.append(SyncResult(path, error=str(exc)))
    return results


# Delivering other processes' spools waits this long after the first connect: a short process
# (a benchmark suite launches hundreds) exits first and never pays for reading someone's old
# spool; a longer one delivers it. A 9 MB leftover made every short process ~47 ms slower.
ORPHAN_DELIVERY_DELAY = 2.0


def deliver_orphans_in_background(directory: Path, socket_path: Path, own: Path | None) -> None:
    """Deliver, on a background thread and after ORPHAN_DELIVERY_DELAY, spools that exited
    processes left behind (not ``own``)."""
    try:
        if not any(p != own for p in spool_files(directory)):
            return
    except OSError:
        return  # not private (PermissionError): nothing in it is delivered; unreadable: nothing to deliver

    def deliver() -> None:
        time.sleep(ORPHAN_DELIVERY_DELAY)
        for result in sync_spools(directory, socket_path, exclude=own):
            if result.batches and not result.error:
                client_logger().info("Delivered %d spooled batches of client %s", result.batches, result.client_id)
            if result.rejected:
                # The process that logged them is gone: this is the one place left to say so
                # (`trackd sync` says it the same way), beyond the daemon status's counter.
                warn(
                    f"delivered the spool {result.path} of an exited process; the store refused "
                    f"{len(result.rejected)} item(s) in it: {'; '.join(result.rejected[:3])}"
                    + (" ..." if len(result.rejected) > 3 else "")
                )

    threading.Thread(target=deliver, name="trackd-spool-sync", daemon=True).start()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """Lock the spool file at ``path`` without waiting: its descriptor (open for reading) once
    locked, None when its client holds it.

    FileNotFoundError when ``path`` names another file by the time the lock is taken. A live
    client removes its delivered spool and, spooling again, makes a new one at the same path: a
    sync that opened the old file before that got its lock, then read and deleted the new file
    by its path, and what the client spooled after went to a deleted file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            # Only this user's own spool files are delivered, whatever the folder (see spool_files).
            raise PermissionError(
                f"Spool file {path} is not delivered: it is not a regular file of this user (owner uid "
                f"{info.st_uid}, this user {os.getuid()})."
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if not _names(path, fd):
            raise FileNotFoundError(errno.ENOENT, "removed (and perhaps made anew) since it was opened", str(path))
        yield fd
    finally:
        os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _same_file(fd: int, other: int) -> bool:
    """Whether descriptors ``fd`` and ``other`` are open on the same file."""
    one, two = os.fstat(fd), os.fstat(other)
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
