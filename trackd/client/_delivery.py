"""Delivering spool files a process did not deliver itself: ``trackd sync``, and the background
delivery by the next client of the spools of processes that exited first.

A spool file (``_spool.py``) is read a frame at a time from the descriptor that holds its lock,
and its batches go to the daemon under the client id of the process that wrote it: the daemon
skips the batches it already holds, so delivering a file twice writes nothing twice. The runs its
SpooledWill frames name follow the batches, with the process that wrote it: the daemon fails
those still RUNNING once that process is gone (its lock is free, so it has exited, unless it
exec'd another program, which the daemon waits for).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

from .._paths import SET_ASIDE_SUFFIX, SPOOL_SUFFIX
from .._words import counted
from .._struct import Value
from ..errors import DaemonUnavailable, RemoteProtocolError
from ..protocol import (
    MAX_OWNED_RUNS,
    NEED_DATA,
    BadBatch,
    Batch,
    Connection,
    ConnectionClosed,
    ErrorCode,
    ErrorReply,
    Flush,
    FlushDone,
    Rejected,
    SpooledWill,
    store_unavailable_reason,
)
from ._launcher import daemon_answers
from ._ledger import refused_message
from ._media_folders import has_media_folders, remove_delivered, remove_orphaned
from ._outbox import batches, client_logger, events, events_in, warn
from ._spool import SPOOL_READ_SIZE, SpoolDamaged, SpoolReader, _locked, _reason, _same_file, _write_all, spool_files
from ._control import listener_pid, unanswered_words
from ._transport import HandshakeUnanswered, handshake, make_hello


class SyncResult(Value):
    """What delivering one spool file did (filled in as it goes)."""

    __slots__ = (
        "path", "client_id", "batches", "skipped", "other_host", "rejected", "rejected_unnamed", "undecodable", "error", "file_fault", "empty", "gone",
        "aside", "written_before", "events", "events_before", "kept",
    )

    def __init__(
        self, path: Path, client_id: str = "", batches: int = 0, skipped: bool = False,
        rejected: list[str] | None = None, error: str | None = None, other_host: str = "", empty: bool = False,
        gone: bool = False,
    ) -> None:
        self.path = path
        self.client_id = client_id
        self.batches = batches
        self.events = 0  # the records of those ``batches`` (a metric series counts its points)
        # Batches of the file the daemon had written already (its Welcome's resume_seq): not sent
        # again; ``events_before`` counts their records.
        self.written_before = 0
        self.events_before = 0
        self.skipped = skipped  # its client is alive and delivers it itself
        self.empty = empty  # removed: its client could not write even its Hello (a full disk), so it holds nothing
        # Why the file, empty (``empty``) or delivered and emptied, is left on disk: it could not be
        # removed (a read-only spool folder); None when it is not left.
        self.kept: str | None = None
        self.gone = gone  # delivered meanwhile by another `trackd sync` (or its own process)
        self.other_host = other_host  # left alone: written on that host (see deliver_spool)
        self.rejected: list[str] = [] if rejected is None else rejected
        # Refused items beyond those ``rejected`` names, one a sentence: the daemon counts those of a
        # batch past the first it names in one sentence (protocol Rejected.rest).
        self.rejected_unnamed = 0
        # Batches in the file that do not decode: never sent, so not refused by the store but lost,
        # and gone with the file (see SpoolReader).
        self.undecodable: list[str] = []
        self.error = error
        # The error is the file's (damaged, unreadable, not this user's), not the daemon's: the
        # same again on every try. Such a file is set aside, at ``aside`` (None: it could not be
        # renamed), holding only what could not be delivered; ``batches`` were delivered before it.
        self.file_fault = False
        self.aside: Path | None = None


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
            # a process killed between creating and writing it leaves one, and so does a process
            # that delivered it but could not delete it, see SpoolRemoval.finish): nothing to deliver.
            result.empty = True
            result.kept = _remove(path, fd, empty=True)
            return result
        sent: dict[int, int] = {}  # seq -> records, of the batches sent on any try
        refused: dict[int, str] = {}
        while True:
            # Read from the descriptor that holds the lock, so the file sent is the file locked.
            os.lseek(fd, 0, os.SEEK_SET)
            with SpoolReader(open(fd, "rb", buffering=0, closefd=False), path) as reader:
                result.client_id = reader.hello.client_id
                if not any_host and reader.hello.host != socket.gethostname():
                    result.other_host = reader.hello.host
                    return result
                before = len(refused)
                try:
                    damage = _send_spool(reader, socket_path, result, sent, refused, timeout=timeout, seen_ms=_written_ms(fd))
                    result.undecodable = [reason for _, reason in reader.undecodable]
                    kept = (reader.hello_size, reader.offset)  # its Hello, and where the damage starts
                    break
                except DaemonUnavailable:
                    # The daemon refused a batch whole (BadBatch) and closed the connection: once
                    # more without it (each try refuses one more, so this ends). It used to fail
                    # here, and every later sync sent the file again, refused again.
                    if len(refused) == before:
                        raise
        result.rejected.extend(refused.values())
        if damage is None:
            result.kept = _remove(path, fd)
            # Written whole (the daemon answered the flush behind the file): the large figures it
            # sent by path are copied, and their folders go with it.
            remove_delivered(path.parent, result.client_id)
        else:
            _keep_the_rest(fd, path, result, damage, *kept)
    return result


def _remove(path: Path, fd: int, *, empty: bool = False) -> str | None:
    """Delete the spool file at ``path`` (open as ``fd``, locked), delivered or empty; why it is
    left on disk, emptied, if it cannot be deleted (None: it is deleted).

    A read-only spool folder (EIO on NFS) refused the unlink, reported as the file's fault: each
    `trackd sync` said "not delivered: [Errno 13] Permission denied" of an empty file and failed,
    and each trackd process's background delivery warned it could deliver it nor rename it.
    Emptied while still locked, it holds nothing to deliver again, and the daemon's will for its
    process no longer waits for it (see daemon/_wills.py ``_spooled``).
    """
    try:
        path.unlink()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not empty:
            _empty(path, fd)  # its error is the file's: set aside, as any other
        return _reason(exc)
    return None


def _empty(path: Path, fd: int) -> None:
    """Empty the file at ``path`` if it is the one open (for reading, and locked) as ``fd``."""
    out = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if _same_file(out, fd):
            os.ftruncate(out, 0)
    finally:
        os.close(out)


def _keep_the_rest(fd: int, path: Path, result: SyncResult, damage: SpoolDamaged, hello_size: int, damaged_at: int) -> None:
    """The spool file at ``path`` (open as ``fd``) is damaged at byte ``damaged_at`` and what came
    before is delivered: set aside only its Hello and the unreadable rest, which nothing can
    deliver (the damaged header took the length of its frame with it).

    The whole file was kept, and every `trackd sync` sent its first batches again: a daemon that
    no longer knew the client (its journal is beside the socket, which a reboot may empty) wrote
    them twice. The background delivery sets such a file aside the same way.
    """
    size = os.fstat(fd).st_size
    result.error = f"{damage}; the {size - damaged_at} bytes from there on cannot be read"
    result.file_fault = True
    aside = _aside_path(path)
    try:
        if damaged_at > hello_size:
            tmp = aside.with_name(f".{aside.name}.tmp")  # not a spool file by its name (see spool_files)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                try:
                    for start, end in ((0, hello_size), (damaged_at, size)):
                        while start < end:
                            chunk = os.pread(fd, min(SPOOL_READ_SIZE, end - start), start)
                            if not chunk:
                                break  # cut short since (cannot happen: the file is locked)
                            _write_all(out, chunk)
                            start += len(chunk)
                finally:
                    os.close(out)
                os.replace(tmp, aside)
            except BaseException:
                # A full disk (the spool's usual company) left the partial copy behind, holding
                # space: the file stays whole where it was, and the next sync tries again.
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            if aside != path:
                path.unlink()
        elif aside != path:
            os.rename(path, aside)
    except OSError as exc:
        result.error += f", and it could not be set aside as {aside} ({exc})"
        return
    result.aside = aside


def _written_ms(fd: int) -> int:
    """When the spool file open as ``fd`` was last written (ms): its process ran then."""
    return os.fstat(fd).st_mtime_ns // 1_000_000


def _send_spool(
    reader: SpoolReader, socket_path: Path, result: SyncResult, sent: dict[int, int], refused: dict[int, str], *,
    timeout: float, seen_ms: int,
) -> SpoolDamaged | None:
    """Send the batches of ``reader`` that the daemon does not hold, and the runs its SpooledWill
    frames name (``seen_ms``: when the file was last written), then wait until it wrote them.

    ``sent`` counts the records of each batch sent. ``refused`` holds the batches the daemon
    refused whole, with the sentence that says so: not sent, and added to when the daemon names
    another (it closes the connection then). Returns where the file is damaged, if it is: the
    batches before that are sent and written all the same (``reader.offset`` is where it starts).
    """
    # A Hello of this version: the frames decoded with today's protocol, so they are valid now,
    # and a spool written by an older trackd is delivered after an upgrade instead of refused.
    hello = make_hello(reader.hello.client_id, reader.hello.store_root, reader.hello.artifact_root)
    transport, protocol, welcome = handshake(socket_path, hello, timeout=timeout)
    try:
        # Bounded like the wait below: a daemon that stops reading (SIGSTOP, a store whose
        # backlog is full) held `trackd sync --timeout 3` in a send for ever, and the lock with it.
        damage = None
        # Counted again on each try: those sent on an earlier one are not "before".
        result.written_before = result.events_before = 0
        _tally(result, sent, refused)
        try:
            for seq, records, frame in reader.batches():
                if seq <= welcome.resume_seq:
                    if seq not in sent:
                        result.written_before += 1
                        result.events_before += records
                elif seq not in refused:
                    transport.send(frame, timeout=timeout)
                    if seq not in sent:
                        result.batches += 1
                        result.events += records
                    sent[seq] = records
                    # Its acks are read as they come: a daemon stops reading a connection that leaves
                    # more than a bound of replies unread, and the send above would then wait in vain.
                    while (data := transport.receive_available()) is not None:
                        protocol.receive_data(data)
                        _take_replies(protocol, socket_path, reader.path, result, refused, sent)
        except SpoolDamaged as exc:
            damage = exc
        if (will := _will(reader, seen_ms)) is not None:
            transport.send(protocol.send(will), timeout=timeout)
        transport.send(protocol.send(Flush(request_id=1)), timeout=timeout)
        deadline = time.monotonic() + timeout
        while not _take_replies(protocol, socket_path, reader.path, result, refused, sent):
            if time.monotonic() > deadline:
                raise DaemonUnavailable(f"The daemon did not confirm {reader.path} within {timeout:g} s.")
            data = transport.receive(max(deadline - time.monotonic(), 0.01))
            if data is not None:
                protocol.receive_data(data)
    finally:
        transport.close()
    return damage


def _will(reader: SpoolReader, seen_ms: int) -> SpooledWill | None:
    """What the daemon is told of the runs the spool's process owned: every run its SpooledWill
    frames named (those read before a damage), sent after the batches; None if they named none
    (a spool an older trackd wrote, or a process that owned no fluent run).

    Before the Flush, so the daemon holds it once the file is written: it waits while the file
    exists (removed once the FlushDone came), as a connection's will waits for its process's spool.
    """
    last = reader.will
    if last is None or not reader.owned:
        return None
    return SpooledWill(
        run_ids=tuple(reader.owned)[-MAX_OWNED_RUNS:], pid=last.pid, started=last.started, host=last.host,
        spool_path=os.path.abspath(reader.path), seen_ms=max(last.seen_ms, seen_ms),
    )


def _take_replies(
    protocol: Connection, socket_path: Path, path: Path, result: SyncResult, refused: dict[int, str], sent: dict[int, int]
) -> bool:
    """Act on the replies ``protocol`` holds; True once the FlushDone came (the spool is written).

    A ``store_unavailable`` reply (the spool's store is on a full or read-only disk) ends the wait
    with the store's sentence: the daemon keeps the batches and writes them when it can, and the
    file stays for the next try, which skips what the daemon wrote. It was called a close of the
    connection, which the daemon keeps (docs/protocol.md).
    """
    while (event := protocol.next_event()) is not NEED_DATA:
        if isinstance(event, ErrorReply) and event.code == ErrorCode.STORE_UNAVAILABLE and not event.request_id:
            reason = store_unavailable_reason(event.message).rstrip(".")
            raise DaemonUnavailable(
                f"{reason}, so the daemon at {socket_path} keeps what it received of {path} and writes it once the "
                "store takes writes again"
            )
        if isinstance(event, BadBatch):
            records = sent.get(event.seq, 0)
            refused[event.seq] = refused_message(event.seq, records, event.message)
        elif isinstance(event, Rejected):
            result.rejected.append(f"{event.item}: {event.message}")
            result.rejected_unnamed += event.items - 1
        elif isinstance(event, FlushDone):
            _tally(result, sent, refused)
            return True
        elif isinstance(event, (ErrorReply, ConnectionClosed)):
            raise DaemonUnavailable(f"The daemon closed the connection while {path} was delivered ({event!r}).")
    return False


def _tally(result: SyncResult, sent: dict[int, int], refused: dict[int, str]) -> None:
    """Count in ``result`` the batches ``sent`` that the daemon did not refuse, and their records."""
    delivered = sent.keys() - refused.keys()
    result.batches = len(delivered)
    result.events = sum(sent[seq] for seq in delivered)


def sync_spools(
    directory: Path, socket_path: Path, *, timeout: float = 60.0, exclude: Path | None = None, any_host: bool = False,
    skip_set_aside: bool = False,
) -> list[SyncResult]:
    """Deliver every spool file in ``directory`` whose client is gone (and, unless ``any_host``,
    that was written on this host); errors are reported per file, and a file that fails for a
    reason of its own is set aside (``SyncResult.aside``), by `trackd sync` and the background
    delivery alike. ``skip_set_aside`` (the background delivery): skip the files set aside."""
    results = []
    unanswered = None  # why the daemon did not answer a handshake: the files after it are not tried
    for path in _deliverable(directory, exclude) if skip_set_aside else spool_files(directory):
        if exclude is not None and path == exclude:
            continue
        if unanswered is not None:
            # A stopped daemon held `trackd sync` for its --timeout once per file (5 files at the
            # default 60 s: 5 minutes) to say the same of each.
            results.append(SyncResult(path, error=f"not tried, as the daemon did not answer for the file before: {unanswered}"))
            continue
        try:
            results.append(deliver_spool(path, socket_path, timeout=timeout, any_host=any_host))
        except FileNotFoundError:
            # Delivered and removed since it was listed: by a `trackd sync` run at the same time,
            # which held its lock, or by its own process. It used to be reported as not delivered.
            results.append(SyncResult(path, gone=True))
        except HandshakeUnanswered as exc:
            # A stopped (SIGSTOP) or hung daemon: "did not answer the handshake within 5 s" named
            # neither its pid nor `kill -CONT <pid>`, which `trackd daemon status` says of it.
            pid = listener_pid(socket_path, ask=False, timeout=0.5)
            unanswered = str(exc) if pid is None else unanswered_words(socket_path, pid, timeout)
            results.append(SyncResult(path, error=unanswered))
        except (DaemonUnavailable, RemoteProtocolError, OSError) as exc:
            result = SyncResult(path, error=str(exc))
            # A daemon that went away or replied nonsense may do better next time; a file that
            # cannot be read (SpoolDamaged, an OSError: the socket's are DaemonUnavailable) will not.
            result.file_fault = isinstance(exc, (SpoolDamaged, OSError))
            if result.file_fault:
                result.aside = _set_aside(path)
            results.append(result)
    return results


def _deliverable(directory: Path, exclude: Path | None) -> list[Path]:
    """The spool files in ``directory`` the background delivery tries: not ``exclude``, nor set aside."""
    return [p for p in spool_files(directory) if p != exclude and not p.name.endswith(SET_ASIDE_SUFFIX)]


def _aside_path(path: Path) -> Path:
    """The name of the spool file at ``path`` once set aside (its own, if it is)."""
    return path.with_name(path.name.removesuffix(SET_ASIDE_SUFFIX).removesuffix(SPOOL_SUFFIX) + SET_ASIDE_SUFFIX)


def _set_aside(path: Path) -> Path | None:
    """Rename the spool file at ``path`` to end in SET_ASIDE_SUFFIX; its new path (None if it
    cannot be renamed)."""
    aside = _aside_path(path)
    try:
        # No lock is held: the file's client is gone (it held none), and a client id is never
        # used again, so no client spools at this path any more.
        os.rename(path, aside)
    except OSError:
        return None
    return aside


# Delivering other processes' spools waits this long after the first connect: a short process
# (a benchmark suite launches hundreds) exits first and never pays for reading someone's old
# spool; a longer one delivers it. A 9 MB leftover made every short process ~47 ms slower.
ORPHAN_DELIVERY_DELAY = 2.0


def deliver_orphans_in_background(directory: Path, socket_path: Path, own: Path | None) -> None:
    """Deliver, on a background thread and after ORPHAN_DELIVERY_DELAY, spools that exited
    processes left behind (not ``own``)."""
    try:
        if not _deliverable(directory, own) and not has_media_folders(directory):
            return
    except OSError:
        return  # not private (PermissionError): nothing in it is delivered; unreadable: nothing to deliver

    def deliver() -> None:
        time.sleep(ORPHAN_DELIVERY_DELAY)
        results = sync_spools(directory, socket_path, exclude=own, skip_set_aside=True)
        removed, kept = remove_orphaned(directory)
        for folder in removed:
            client_logger().info("Removed %s: large files of an exited process, copied or lost, no spool waits for", folder)
        for folder, why in kept:
            client_logger().info("Kept %s, large files of an exited process: %s", folder, why)
        for result in results:
            if result.error and not result.file_fault and not daemon_answers(socket_path):
                # The daemon went away (`trackd daemon stop`, a restart) before or while this
                # delivered: the file stays whole for the next process to connect, and nothing of
                # it is lost. An idle process said so of another's spool at every daemon stop.
                client_logger().info("Spool %s of an exited process not delivered yet: %s", result.path, result.error)
            elif result.error:
                _warn_undelivered(result)  # the batches before a damage are delivered: what follows is said too
            elif result.batches:
                client_logger().info("Delivered %s of client %s", events_in(result.events, result.batches), result.client_id)
            # The process that logged them is gone: this is the one place left to say what of its
            # spool did not reach the store (`trackd sync` says it the same way), beyond the
            # daemon status's counter.
            if result.rejected:
                warn(
                    f"delivered the spool {result.path} of an exited process; the store refused "
                    f"{counted(len(result.rejected) + result.rejected_unnamed, 'item')} in it: {_some(result.rejected)}"
                )
            if result.undecodable:
                # Never sent: not the store's refusal.
                warn(
                    f"delivered the spool {result.path} of an exited process but for {batches(len(result.undecodable))} "
                    f"in it that cannot be decoded, which {'is' if len(result.undecodable) == 1 else 'are'} lost: {_some(result.undecodable)}"
                )

    threading.Thread(target=deliver, name="trackd-spool-sync", daemon=True).start()


def _warn_undelivered(result: SyncResult) -> None:
    """The one line for a spool of an exited process that the background delivery could not deliver.

    It said nothing, and every trackd process tried the file again each time it connected.
    """
    error = (result.error or "").rstrip(".")  # it ends the clause: "s.; the next" was printed
    if not result.file_fault:
        warn(
            f"could not deliver the spool {result.path} of an exited process: {error}; the next trackd "
            "process to connect tries again, or run `trackd sync`."
        )
    elif result.aside is not None:
        # Its batches before the damage are delivered: what is set aside is only what could not be.
        done = f"delivered {events_in(result.events, result.batches)} of the spool of an exited process, but not the rest" if result.batches else (
            "could not deliver the spool of an exited process"
        )
        warn(
            f"{done}: {result.error}; it is set aside as {result.aside}, "
            "which trackd no longer tries in the background: `trackd sync` tries it again and says why it fails."
        )
    else:
        warn(
            f"could not deliver the spool {result.path} of an exited process: {result.error}; nor rename it to "
            f"end in {SET_ASIDE_SUFFIX}, so the next trackd process to connect tries again; `trackd sync` says why it fails."
        )


def _some(items: list[str]) -> str:
    """The first three of ``items``, then " ..." if there are more."""
    return "; ".join(items[:3]) + (" ..." if len(items) > 3 else "")
