"""The spool: where a client keeps its events while no daemon can be reached.

A spool file holds the client's Hello frame, then the Batch frames it could not deliver, exactly
as they would have gone over the socket. The client that wrote it replays it when a daemon
answers again; ``trackd sync`` (or the next client that connects) delivers the spool of a
process that exited first (``_delivery.py``). Replaying is safe to repeat: the daemon skips batches it already
holds, by the client id and sequence numbers in the frames.

Between the batches go ``SpooledWill`` frames: the runs the process owns (``_will.py``), each
frame written before the batches that create a run it adds, with the process's pid and start
time. A process that spools tells no daemon its ``OwnedRuns``, and one SIGKILLed with its run in
the file left it RUNNING for ever once the file was delivered; its delivery tells the daemon
now. The process's own resend leaves them out (it tells its daemon itself), and so does a spool
an older trackd wrote, which holds none.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .._paths import SET_ASIDE_SUFFIX, SPOOL_DIR_ENV, SPOOL_SUFFIX, check_private_directory, ensure_private_directory, temp_directory
from .._peer import process_state
from ..errors import LocalProtocolError, RemoteProtocolError
from ..protocol import (
    FRAME_HEADER_SIZE,
    MAX_OWNED_RUNS,
    Batch,
    Event,
    Hello,
    SpooledWill,
    decode_body,
    decode_header,
    encode_frame,
)
from ._outbox import events
from ._spool_fds import OPENING, Held, close_copy, hold, release

# SPOOL_SUFFIX, and SET_ASIDE_SUFFIX (in trackd/_paths.py, which the daemon reads too): a spool
# file the background delivery could not deliver (damaged, unreadable) is renamed to end so: still
# a spool, which `trackd sync` tries again and reports, but no longer one every trackd process
# tries (and failed) again in the background, without a word, each time it connected.
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
        # The descriptor _open_locked has open and not yet given to _fd (it waits for the lock,
        # writes the Hello); OPENING while os.open or os.close runs (see abandon).
        self._opening = -1
        self._real_path = str(self.path)  # its symbolic links resolved when opened (see _spool_fds.close_copies)
        self.last_seq = 0
        # Records written to the file (less those lost or refused); ``waiting`` less those acknowledged.
        self.records = 0
        # Records of the batches the daemon acknowledged, which are the first ``_acked`` of _counts:
        # the file goes only once all are, and a resend cut short said the whole file still waited.
        self.acked_records = 0
        self._acked = 0
        # (seq, records) of each batch in the file, to count what is lost if it cannot be read back.
        self._counts: list[tuple[int, int]] = []
        # Batches in the file the daemon refused whole (BadBatch): never sent again.
        self.refused: set[int] = set()
        # Batches in the file that do not decode (see SpoolReader.undecodable), already counted lost.
        self._lost_seqs: set[int] = set()
        # The runs the file's SpooledWill frames name (a dict for its order), and this process's
        # start time, which tells it from a later process given its pid.
        self._will: dict[str, None] = {}
        self._started: int | None = None

    def append(self, batches: list[tuple[int, bytes, int]], owned: tuple[str, ...] = ()) -> None:
        """Append (seq, frame, record count) batches, creating the file with its Hello first.

        ``owned``: the runs the process owns, read after the batches' records were taken (a run
        is owned before its creation is queued). Those the file does not name yet go first, in a
        SpooledWill with every run it named before: one ended since may have its end in these
        batches, or still in memory, and the daemon fails only what is RUNNING once they are written.

        ``write`` and then ``count``: the sender writes outside its lock and counts under it.
        """
        self.count(batches, self.write(batches, owned))

    def write(self, batches: list[tuple[int, bytes, int]], owned: tuple[str, ...] = ()) -> dict[str, None] | None:
        """``append``'s disk half: open and lock the file if need be and write the frames, changing
        nothing another thread reads (``records``, ``waiting``); returns what ``count`` takes.

        The disk may be slow or hung (a spool folder on NFS, the default under a home folder on
        many clusters): the sender calls this without its lock, which logging calls take.
        """
        if not batches:
            return None
        if self._fd < 0:
            ensure_private_directory(self.path.parent, variable=SPOOL_DIR_ENV)
            self._open_locked()
        will = self._will_frame(owned)
        size = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, (will[0] if will is not None else b"") + b"".join(frame for _, frame, _ in batches))
        except BaseException:
            # A torn frame would make the whole spool unreadable: cut back to the last whole one.
            os.ftruncate(self._fd, size)
            raise
        return will[1] if will is not None else None

    def count(self, batches: list[tuple[int, bytes, int]], named: dict[str, None] | None) -> None:
        """``append``'s counting half: ``batches`` are in the file (``write`` returned ``named``)."""
        if not batches:
            return
        if named is not None:
            self._will = named
        self.last_seq = max(self.last_seq, max(seq for seq, _, _ in batches))
        self.records += sum(count for _, _, count in batches)
        self._counts.extend((seq, count) for seq, _, count in batches)

    def _will_frame(self, owned: tuple[str, ...]) -> tuple[bytes, dict[str, None]] | None:
        """The SpooledWill frame that adds ``owned`` to the runs the file names, with the runs it
        will name then; None if it names them all."""
        if all(run_id in self._will for run_id in owned):
            return None
        runs = {**self._will, **dict.fromkeys(owned)}
        if self._started is None:
            self._started = process_state(self._hello.pid)[1]
        event = SpooledWill(
            run_ids=tuple(runs)[-MAX_OWNED_RUNS:], pid=self._hello.pid, started=self._started, host=self._hello.host,
            spool_path=os.path.abspath(self.path), seen_ms=int(time.time() * 1000),
        )
        return encode_frame(event), runs

    def _open_locked(self) -> None:
        """Open the spool file as ``_fd``, created with its Hello if new, open for appending and locked.

        The descriptor is ``_opening`` from the open on, and ``OPENING`` while the open or a close
        runs: a child forked meanwhile closes its copy (``abandon``). A worker forked while the lock
        was awaited (slow on NFS) kept the descriptor, unknown to the at-fork hook, and with it the
        lock its parent took: after the parent exited, `trackd sync` left the spool as "still running".
        """
        self._real_path = os.path.realpath(self.path)
        for _ in range(MAX_OPEN_TRIES):
            self._opening = OPENING
            fd = self._opening = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:
                    # `trackd sync` removed it as empty between the open and the lock: what went
                    # into this descriptor would go to a deleted file.
                    self._close_opening()
                    continue
                if os.fstat(fd).st_size > 0:
                    # This client's, delivered (or counted lost) and let go, left whole only when it
                    # could be neither deleted nor emptied then (see SpoolRemoval.finish): added
                    # to, its old batches were read as the new ones' (sent again, found lost by
                    # the wrong index), and `trackd sync` sent them all again.
                    os.ftruncate(fd, 0)
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
                self._close_opening()
                raise
            self._fd, self._opening = fd, -1
            return
        raise OSError(errno.EAGAIN, f"Spool file {self.path} was removed {MAX_OPEN_TRIES} times as it was created")

    def reader(self) -> SpoolReader:
        """The file, to be read again from its start one frame at a time.

        FileNotFoundError when it is gone, or ``path`` names another file than the one this
        client writes (removed, and made anew by someone else): that one is not ours to send.
        """
        # Known to the at-fork hook from before the open (see _spool_fds.hold) until it is closed:
        # a worker forked while it opened (or read the Hello) kept its copy for its whole life.
        held = hold(os.path.realpath(self.path))
        try:
            fd = held.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            if self._fd < 0 or not _same_file(fd, self._fd):
                raise FileNotFoundError(errno.ENOENT, "replaced since this client wrote it", str(self.path))
            # Unbuffered (see SpoolReader); the descriptor is closed by the reader's release of ``held``.
            return SpoolReader(open(fd, "rb", buffering=0, closefd=False), self.path, held)
        except BaseException:
            release(held)
            raise

    @property
    def waiting(self) -> int:
        """Records in the file the daemon has not acknowledged (and that are not lost or refused)."""
        return self.records - self.acked_records

    def acked(self, seq: int) -> None:
        """The daemon wrote the batches up to ``seq``: their records wait no more."""
        counts, index = self._counts, self._acked
        while index < len(counts) and counts[index][0] <= seq:
            batch_seq, count = counts[index]
            if batch_seq not in self._lost_seqs and batch_seq not in self.refused:
                self.acked_records += count
            index += 1
        self._acked = index

    def _forget(self, index: int, count: int) -> None:
        """The ``index``-th batch (``count`` records) leaves the file's count (lost or refused)."""
        self.records -= count
        if index < self._acked:  # an ack covered it (a later batch's): counted there too
            self.acked_records -= count

    def _counts_after(self, seq: int) -> list[int]:
        """The record counts of the batches in the file after ``seq``, those lost or refused left out."""
        gone = self._lost_seqs | self.refused
        return [count for batch_seq, count in self._counts if batch_seq > seq and batch_seq not in gone]

    def batches_after(self, seq: int) -> int:
        """Batches in the file after ``seq`` (those lost or refused left out)."""
        return len(self._counts_after(seq))

    def records_after(self, seq: int) -> int:
        """Records in the batches after ``seq`` (those lost or refused left out)."""
        return sum(self._counts_after(seq))

    def delivered_by(self, seq: int) -> bool:
        """Whether an ack of ``seq`` covers every batch in the file that can be delivered."""
        return self.batches_after(seq) == 0

    def lose(self, index: int, reason: str) -> tuple[int, str] | None:
        """The ``index``-th batch of the file does not decode (``reason``): count its records lost,
        once, and return how many with the sentence that says so (None: said already).

        The index, not a seq: a frame that does not decode tells none. This client wrote one
        frame per batch it counts, in order, after the Hello (and SpooledWill frames, which the
        reader does not count).
        """
        if index >= len(self._counts):
            return None  # not a frame of ours (cannot happen: the file is locked)
        seq, count = self._counts[index]
        if seq in self._lost_seqs:
            return None
        self._lost_seqs.add(seq)
        self._forget(index, count)
        return count, f"spooled batch {seq} ({events(count)}) is lost: {reason}"

    def truncate(self, offset: int) -> None:
        """Cut the file back to its first ``offset`` bytes (``cut`` counts it): the disk's half, for
        the sender to do without its lock (see ``detach``)."""
        os.ftruncate(self._fd, offset)

    def cut(self, frames: int) -> int:
        """Count the file cut back (``truncate``) to its Hello and first ``frames`` batches, because
        what follows cannot be read; returns how many records that drops."""
        gone = self._lost_seqs | self.refused
        dropped = [(index, count) for index, (seq, count) in enumerate(self._counts) if index >= frames and seq not in gone]
        lost = sum(count for index, count in dropped if index >= self._acked)  # not those written already
        for index, count in dropped:
            self._forget(index, count)
        self._counts = self._counts[:frames]
        self._acked = min(self._acked, frames)
        self._will = {}  # its last SpooledWill frames may be cut off: the next append names every run again
        self.last_seq = max((seq for seq, _ in self._counts), default=0)
        return lost

    def refuse(self, seq: int) -> int:
        """Skip batch ``seq`` from now on (the daemon will never write it); returns its records (0: not in the file)."""
        if seq in self.refused or seq in self._lost_seqs:
            return 0
        # Kept in _counts: lose() finds a batch by its place in the file.
        records = 0
        for index, (batch_seq, count) in enumerate(self._counts):
            if batch_seq == seq:
                self._forget(index, count)
                records += count
        if records:
            self.refused.add(seq)
        return records

    def remove(self) -> str | None:
        """Delete the spool once the daemon acknowledged everything in it (see SpoolRemoval.finish)."""
        removal = self.detach()
        return removal.finish() if removal is not None else None

    def detach(self) -> SpoolRemoval | None:
        """Forget the file, delivered, and return what deletes it (None: none open); the counting
        half of ``remove``, for the sender's lock, whose thread deletes it after releasing it.

        Its stat, unlink and close wait for the disk, which may be slow or hung (NFS): under the
        lock they held every logging call that drops, ``stats()``, and the bounded waits of exit
        (TRACKD_EXIT_TIMEOUT=2 took 20 s under a 20 s unlink).
        """
        removal = SpoolRemoval(self.path, self._fd, self._real_path) if self._fd >= 0 else None
        self._fd = -1
        self.last_seq = 0
        self.records = 0
        self.acked_records = 0
        self._acked = 0
        self._counts = []
        self.refused = set()
        self._lost_seqs = set()
        self._will = {}
        return removal

    def _close_opening(self) -> None:
        fd, self._opening = self._opening, OPENING
        os.close(fd)
        self._opening = -1

    def abandon(self) -> None:
        """In a forked child: forget the parent's spool without touching it (its copies closed)."""
        for fd in (self._fd, self._opening):
            close_copy(fd, self._real_path)
        self._fd = self._opening = -1


class SpoolRemoval:
    """A delivered spool file to delete, its descriptor still open (and the file locked) until then."""

    def __init__(self, path: Path, fd: int, real_path: str) -> None:
        self.path = path
        self.fd = fd
        self.real_path = real_path
        self.left_whole = False  # set by finish: neither deleted nor emptied, it holds delivered batches

    def finish(self) -> str | None:
        """Delete the file by its path while that names it (see Spool.reader), and close it;
        returns why it is left on disk (None: it is not).

        One that cannot be deleted (a spool folder made read-only, NFS's EIO) is emptied while it
        is still locked: it stayed whole, `trackd sync` (or any process's background delivery)
        sent its batches again, written twice by a daemon that no longer knew this client, and the
        next spill added to them, counted from the file's first batch (see Spool._open_locked).
        """
        try:
            if _names(self.path, self.fd):
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            try:
                os.ftruncate(self.fd, 0)
            except OSError as also:
                self.left_whole = True
                return (
                    f"could not be removed ({_reason(exc)}) nor emptied ({_reason(also)}): it holds events "
                    "delivered already, which `trackd sync` would send again; remove it"
                )
            return f"could not be removed ({_reason(exc)}); it is left empty"
        finally:
            fd, self.fd = self.fd, OPENING  # closing: see _spool_fds.close_copies
            os.close(fd)
            self.fd = -1
        return None

    def abandon(self) -> None:
        """In a forked child: close its copy, leaving the file to the parent."""
        close_copy(self.fd, self.real_path)
        self.fd = -1


class SpoolDamaged(RemoteProtocolError):
    """A spool file cannot be read: its Hello, or a frame header, is damaged (or it is empty)."""


class SpoolReader:
    """A spool file read one frame at a time: its Hello when opened, then ``batches()``.

    At most SPOOL_READ_SIZE bytes and one frame are held at a time. A torn last frame (its
    writer died in the middle of it) ends the file; a damaged header (or Hello) raises
    RemoteProtocolError naming the byte it starts at, which ``offset`` holds then. A whole frame
    after the Hello whose body does not decode (a record the logging call failed to check) is
    left out and listed in ``undecodable``: its length is known, so the frames after it are
    read as ever, and the daemon would refuse it anyway. It used to end the file there, every
    event spooled after it lost with it.

    It reads ahead SPOOL_READ_SIZE bytes at a time itself, from a file opened unbuffered: a
    ``BufferedReader`` holds a lock while it reads, and a process forked while its sender thread
    read the spool file (a loop of fork() while a spool was sent again) made a child whose at-fork
    hook closed its copy of the reader (``Spill.abandon``) and waited for ever on that lock, which
    no thread of the child would release; its parent waited for ever on the child.
    """

    def __init__(self, file: BinaryIO, path: Path, held: Held | None = None) -> None:
        """Read the Hello from ``file`` (open for reading at its start, best unbuffered; closed by
        ``close()``, with ``held``'s descriptor)."""
        self.path = path
        self._file = file
        self._held = held
        # Bytes read ahead from the file, used from ``_ahead_at`` on (see _read).
        self._ahead = b""
        self._ahead_at = 0
        # Where the last whole frame read ends.
        self.offset = 0
        # Whole frames read after the Hello but SpooledWill frames (each one a batch of the writer's
        # count, see Spool.lose), and (index among them, why) of each left out as undecodable.
        self.frames = 0
        self.undecodable: list[tuple[int, str]] = []
        # The last SpooledWill read, and every run the file's SpooledWill frames named so far, in
        # order (a dict): a frame cut off by a damage (Spool.cut) may have named runs the later ones do not.
        self.will: SpooledWill | None = None
        self.owned: dict[str, None] = {}
        first = self._next_frame()
        if first is None:
            raise SpoolDamaged(f"Spool file {path} is empty or damaged.")
        if not isinstance(first[0], Hello):
            if isinstance(first[0], LocalProtocolError):
                raise SpoolDamaged(f"Spool file {path} is damaged at byte 0: {first[0]}") from first[0]
            raise SpoolDamaged(f"Spool file {path} does not start with a Hello frame.")
        self.hello: Hello = first[0]
        self.hello_size = self.offset  # where the batches start

    def batches(self) -> Iterator[tuple[int, int, bytes]]:
        """The Batch frames after the Hello that decode, in order, as (seq, records, frame); the
        others are listed in ``undecodable`` before the next one is yielded, and the SpooledWill
        frames are read into ``will`` and ``owned``."""
        while (item := self._next_frame()) is not None:
            event, frame = item
            if isinstance(event, SpooledWill):
                self.will = event
                self.owned.update(dict.fromkeys(event.run_ids))
                continue
            self.frames += 1
            if isinstance(event, LocalProtocolError):
                start = self.offset - len(frame)
                self.undecodable.append(
                    (self.frames - 1, f"the batch at byte {start} of spool file {self.path} cannot be decoded: {event}")
                )
            elif isinstance(event, Batch):
                yield event.seq, event.events, frame

    def close(self) -> None:
        self._file.close()
        if self._held is not None:
            release(self._held)

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _next_frame(self) -> tuple[Event | LocalProtocolError, bytes] | None:
        """The next frame, decoded (or why its body does not decode) and as bytes; None at the end
        of the file or at a torn last frame."""
        header = self._read(FRAME_HEADER_SIZE)
        if len(header) < FRAME_HEADER_SIZE:
            return None
        try:
            size = decode_header(header)  # at most MAX_FRAME_SIZE: the bound on what is read at once
        except LocalProtocolError as exc:
            # Where the next frame starts is lost with it: nothing after it can be read.
            raise SpoolDamaged(f"Spool file {self.path} is damaged at byte {self.offset}: {exc}") from exc
        body = self._read(size)
        if len(body) < size:
            return None  # the writer died in the middle of this frame
        self.offset += FRAME_HEADER_SIZE + size
        try:
            return decode_body(body), header + body
        except LocalProtocolError as exc:
            return exc, header + body

    def _read(self, size: int) -> bytes:
        """The next ``size`` bytes of the file (fewer at its end), read ahead SPOOL_READ_SIZE at a time."""
        ahead, at = self._ahead, self._ahead_at
        if len(ahead) - at >= size:
            self._ahead_at = at + size
            return ahead[at : at + size]
        parts, have = [ahead[at:]], len(ahead) - at
        while have < size:
            chunk = self._file.read(max(SPOOL_READ_SIZE, size - have))
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self._ahead, self._ahead_at = data, min(size, len(data))
        return data[:size]


def spool_files(directory: Path, *, setting: str = SPOOL_DIR_ENV) -> list[Path]:
    """The spool files in ``directory``, in name order; none when it does not exist. ``setting``:
    what chose the folder (SPOOL_DIR_ENV, or the CLI's SPOOL_DIR_OPTION), which a refusal names.

    PermissionError when another user owns the folder or may write to it: a spool file names the
    store its events go to, and may ask the daemon to copy a file into it, so one planted there
    (``/tmp/trackd-spool-<uid>/``, the fallback without a writable home, made first by someone
    else) had this user's daemon copy this user's files into a store the planter reads.
    """
    if not directory.is_dir():
        return []
    check_private_directory(directory, variable=setting)
    return sorted(directory.glob(f"*{SPOOL_SUFFIX}"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """Lock the spool file at ``path`` without waiting: its descriptor (open for reading) once
    locked, None when its client holds it.

    FileNotFoundError when ``path`` names another file by the time the lock is taken. A live
    client removes its delivered spool and, spooling again, makes a new one at the same path: a
    sync that opened the old file before that got its lock, then read and deleted the new file
    by its path, and what the client spooled after went to a deleted file.
    """
    # Known to the at-fork hook before the open (OPENING, found by its path) until after the
    # close: a child forked in between would share the lock.
    held = hold(os.path.realpath(path))
    try:
        fd = held.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except BaseException:
        release(held)
        raise
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
        release(held)  # (its copy closed already in a forked child: see close_held_in_child)


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


def _reason(exc: OSError) -> str:
    """Why an OSError happened, without the path it names (the line names it once)."""
    return exc.strerror or str(exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
