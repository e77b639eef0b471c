"""What both halves of a Sender share: its state, its count of what is pending, and the spool
that takes the events when no daemon does.

``SenderThread`` (``_sender_thread.py``) connects, sends and reads replies on the sender thread;
``Sender`` (``_sender.py``) is the caller's half. The spooling methods run on the sender thread;
``pending()`` on both, under the lock. A bounded flush that gives the daemon up, and the lines
that say what went where, are ``GiveUp``'s (``_give_up.py``).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from collections.abc import Callable

from .._paths import default_paths
from ..errors import DaemonUnavailable, LocalProtocolError
from ..protocol import Connection, Event, Record, encode_frame
from ._config import ClientConfig
from ._control import without_socket, without_socket_words
from ._ledger import Ledger
from ._outbox import BARRIER, Request, batch_of, describe_record, inline_size, next_chunk
from ._spill import Spill, Written
from ._transport import Interrupt, Transport, refused_words
from ._will import Will


class SenderState:
    """State shared by both halves of a Sender, and the spill that uses it."""

    # Wake the thread early when this many records wait: one batch's worth.
    MAX_BEFORE_SEND = 10_000
    # Records and (estimated) bytes in one batch frame, well inside the protocol's limits.
    MAX_RECORDS_PER_BATCH = 10_000
    MAX_BATCH_BYTES = 4 * 1024 * 1024
    # How long a flush that gave the daemon up waits for the thread to spool what it holds. The
    # thread stops waiting on the socket when poked, and then writes at most a full buffer and a
    # full unacknowledged window (DEFAULT_MAX_BUFFERED + DEFAULT_MAX_UNACKED_EVENTS events, a
    # few MiB) to a local file: tens of milliseconds, so a second covers a loaded machine.
    SPILL_TIMEOUT = 1.0
    # How long close() waits for the thread to end after its flush: it delivered everything, or
    # spooled it, so it ends within a send interval unless the daemon stopped answering since.
    STOP_TIMEOUT = 1.0
    # How often the thread starts a daemon while none answers; less often after one exited at once.
    SPAWN_INTERVAL = 1.0
    SPAWN_INTERVAL_AFTER_EXIT = 30.0
    # An idle sender owning runs looks for a daemon another process started (see
    # SenderThread._tell_will_to_a_running_daemon): first after this long, doubling up to the
    # maximum; a handshake slower than the timeout is tried again at the next probe.
    WILL_PROBE_INTERVAL = 0.1
    WILL_PROBE_MAX_INTERVAL = 2.0
    WILL_PROBE_TIMEOUT = 1.0
    # How long no daemon answers, while events wait, before the thread says it holds them and
    # retries (SenderThread._unreachable_is_news): a daemon restarted by hand is back by then, and
    # a process that exits sooner says once, at exit, what became of its events.
    UNREACHABLE_GRACE = 1.0

    client_id: str
    buffer: collections.deque[Record]
    buffered_bytes: int  # inline artifact content in the buffer (see _on_full.py)
    wake_at: int
    _cond: threading.Condition
    _thread: threading.Thread | None
    _stopping: bool
    _drain_left: int | None
    _late: int
    _spill_requested: bool
    _lost_reported: bool
    _gave_up_reason: str | None
    _failed_connects: int
    _gave_up_announced: bool
    _unannounced: int
    _unsaid_since: int | None
    _moving_said_until: int
    _closed: bool
    _transport: Transport | None
    _protocol: Connection | None
    _ledger: Ledger
    _spill: Spill
    will: Will
    _dropped: int
    _dropped_reported: int
    _warned_full: bool
    _blocked_s: float
    _warned_unavailable: bool
    _next_spawn: float
    _wake_r: int
    _wake_w: int
    config: ClientConfig
    store_root: str
    artifact_root: str | None
    _interrupt: Interrupt
    _spawn_failure: str | None
    _spawn_stopped = False  # that failure: the daemons it started were stopped before they answered (ran, not failed)
    _refusal: str | None
    _behind_spool = False  # connected, and sending the spool file again (see SenderThread._send_spooled)
    # When an idle sender owning runs next looks for a daemon, and its backoff (WILL_PROBE_INTERVAL).
    _next_will_probe = 0.0
    _will_probe_delay = 0.0
    _heard_at = 0.0  # time.monotonic() when the daemon last answered (or this client connected)
    _daemon_leaving = False  # the daemon said it is shutting down; cleared at the next connect
    # The store's sentence when the daemon said it holds this client's events because their store
    # refuses writes (ErrorReply store_unavailable: a full disk, a read-only one); cleared by the
    # next Ack or FlushDone, which come only after a write, or by a Welcome whose resume_seq is past
    # the last Ack (written while this client was away). Exit said the daemon "did not answer".
    _store_outage: str | None = None
    # The sender thread is starting a daemon, or waiting for the one another process starts (see
    # SenderThread._start_daemon): no daemon answers yet, and none is missing.
    _daemon_starting = False
    # A start began and no daemon has answered since, nor has a start failed: between two attempts
    # too (another process holds the start lock and has started none yet), see _starting_words.
    _start_unanswered = False
    # The last attempt's handshake went unanswered on a connection a process took: a daemon that is
    # stopped (SIGSTOP) or hung listens there, and no start is under way whatever the flags above say
    # (the start finds a listener and starts none). Exit said such a daemon "is starting".
    _handshake_unanswered = False
    # Records the sender thread took for the spool file and is writing there (see _to_spool):
    # in neither the buffer, the ledger nor the file's count until that write ends.
    _spilling = 0
    # Records at the buffer's front that the spill under way still takes (None: no spill). A spill
    # ends at what the buffer held when it began (see _spool_pending).
    _spill_left: int | None = None
    # The thread was started when the sender was made, before anything was given to it: its first
    # turn connects to a daemon that runs, starting none (see SenderThread._connect_ahead).
    _connect_ahead_pending = False
    # A record that copies a file met this handshake: nothing more goes before its Welcome (see
    # SenderConnect._batches_ahead).
    _ahead_held = False
    # Something was given to the thread (a record, a request, a flush barrier): until then a flush
    # or close has nothing to wait for, whether or not the thread runs.
    _used = False
    # Until then (time.monotonic()), after the process's first batch, every record appended to an
    # empty buffer wakes the thread (see SenderState._rearm_wake): a short process's first events
    # go within a thread turn, not at the next send interval.
    # Bounded flushes under way (GiveUp.flush_or_warn): each says what becomes of the events it
    # gives up, so the thread does not say first that it holds them and retries.
    _bounded_flushes = 0

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe already wakes the thread

    def _counted_from(self, start: float, patient: bool) -> float:
        """When a wait that began at ``start`` counts its timeout from: then, or (``patient``) from
        the daemon's last reply if that came later, so the wait goes on while the daemon answers."""
        return max(start, self._heard_at) if patient else start

    def _refused_words(self) -> str | None:
        """The daemon's refusal of this client's last attempt to connect, as a clause for a warning
        or an error (its connection limit, its protocol version); None if it let it in."""
        refusal = self._refusal if self._transport is None else None
        return None if refusal is None else refused_words(self.config.socket_path, refusal)

    def _starting_words(self) -> str | None:
        """A daemon start under way while none answers, as the start of a clause ("... and does not
        answer yet"); None if a daemon answers or none is being started.

        Or a daemon that holds the lock with its socket file missing (``without_socket``): the
        start finds it and waits for it, and it was said to be "starting".
        """
        if self._transport is not None or self._handshake_unanswered or not (self._daemon_starting or self._start_unanswered):
            return None
        paths = default_paths(self.config.socket_path)
        if (socketless := without_socket(paths)) is not None:
            return without_socket_words(paths, socketless)
        return f"the daemon at {self.config.socket_path} is starting (started by this process or another)"

    def _no_daemon_words(self) -> str:
        """Why a wait ended when an attempt to connect found no daemon and started none, as a clause."""
        starts = "none could be started" if self.config.autostart else "TRACKD_AUTOSTART=0 starts none"
        if self.config.autostart and self._spawn_failure:
            # Why: at exit the line that said it when the start failed is no longer printed
            # (SenderThread._unreachable_is_news), and a bad TRACKD_LOOP went unnamed.
            failure = self._spawn_failure.rstrip(".")
            failure = f"{failure[:1].lower()}{failure[1:]}"
            if self._spawn_stopped:  # they started, and were stopped: "none could be started" was untrue
                return f"no daemon answers at {self.config.socket_path}: {failure}"
            starts += f" ({failure})"
        return f"no daemon answers at {self.config.socket_path} and {starts}"

    def _store_refusing_words(self, sent: int = 0) -> str | None:
        """What the daemon said of a store that refuses writes, as a clause: the store's sentence and
        what the daemon does with the events (``sent``: how many were sent to it, when known); None
        if it said nothing, or has written since."""
        outage = self._store_outage
        if outage is None:
            return None
        received = f" ({sent} were sent to it)" if sent else ""
        return (
            f"{outage[:1].lower()}{outage[1:].rstrip('.')}, so the daemon at {self.config.socket_path} keeps the events "
            f"it received{received} and writes them once the store takes writes again"
        )

    def _no_daemon_since(self, failed: int) -> bool:
        """An attempt to connect after ``failed`` attempts had failed found no daemon, and started
        none, and no daemon answers now: a bounded flush has nothing left to wait for."""
        return self._failed_connects > failed and self._transport is None

    def pending(self) -> int:
        """Records accepted but not yet acknowledged as written (spooled ones included)."""
        with self._cond:
            return self._pending_locked()

    def _early_wake(self) -> int:
        """Wake the thread early at a batch's worth of records, or sooner under a small buffer bound."""
        return min(self.MAX_BEFORE_SEND, self.config.max_buffered)

    def _pending_locked(self) -> int:
        spooled = self._spill.records
        # Logging calls append without the lock, so a Python-level loop over the buffer itself can
        # raise "deque mutated during iteration" (it killed the sender thread once, when it counted
        # pending events after losing the daemon); copy() runs in C, under the GIL, in one piece.
        snapshot = self.buffer.copy()
        buffered = len(snapshot) - sum(1 for record in snapshot if record[0] == BARRIER)
        if self._drain_left is not None:
            buffered = min(buffered, self._drain_left)  # what other threads log past the stop mark is not sent
        return buffered + self._ledger.unacked_events + self._spilling + spooled

    def _moving_locked(self) -> int:
        """Events the spill under way has taken for the spool file, or will take (what the buffer
        held when it began): on their way there, in neither the buffer's count nor the file's."""
        ahead = itertools.islice(self.buffer.copy(), self._spill_left or 0)  # copy(): see _pending_locked
        return self._spilling + sum(1 for record in ahead if record[0] != BARRIER)

    def _next_chunk(self) -> tuple[list[Record], Request | None]:
        # Under the lock the drop policy pops with: next_chunk pops a counted number of records,
        # which a concurrent drop from the other end could leave missing.
        with self._cond:
            # Stopping: only the records in the buffer when close() set the mark (see Sender.close);
            # spilling: only those in it when the spill began (see _spool_pending).
            left, spill = self._drain_left, self._spill_left
            limit = min([self.MAX_RECORDS_PER_BATCH, *(mark for mark in (left, spill) if mark is not None)])
            records, barrier = next_chunk(self.buffer, limit, self.MAX_BATCH_BYTES)
            taken = len(records) + (barrier is not None)
            if left is not None:
                self._drain_left = max(0, left - taken)
            if spill is not None:
                self._spill_left = max(0, spill - taken)
            if self.buffered_bytes:
                # Taken: the window bounds these bytes now, and a call waiting for room may go.
                self.buffered_bytes -= sum(map(inline_size, records))
                self._cond.notify_all()
            return records, barrier

    def _rearm_wake(self, taken: int) -> None:
        """Let the next logging calls wake the thread again, at MAX_BEFORE_SEND records."""
        if not self._used:
            # Nothing appended through the slow path yet (the thread connected ahead): the first
            # record must still go through wake(), which marks the sender used. Armed at
            # MAX_BEFORE_SEND here, the first records went past it, and flush() and close(),
            # finding the sender unused, returned before the daemon had acknowledged them.
            return
        if len(self.buffer) < self._early_wake():
            self.wake_at = self._early_wake()

    def _window_has_room(self) -> bool:
        """Whether the batches sent on this connection and waiting for their ack, the spool file's
        included, leave room for one more (those still to be resent after a reconnect do not count)."""
        spooled_events, spooled_bytes = self._spill.in_flight()
        events_out, bytes_out = self._ledger.window()
        config = self.config
        return (
            events_out + spooled_events < config.max_unacked_events
            and bytes_out + spooled_bytes < config.max_unacked_bytes
        )

    def _encode_batches(self, records: list[Record], protocol: Connection | None = None) -> bytes:
        """The frames of the next batches (one, unless it had to be split), kept until acknowledged;
        ``protocol``: the connection that sends them (the sender's by default). Under the lock."""
        protocol = protocol or self._protocol
        assert protocol is not None
        batches = self._encode(records, protocol.send) if records else []
        for seq, frame, count in batches:
            self._ledger.sent(seq, frame, count)
        return batches[0][1] if len(batches) == 1 else b"".join(frame for _, frame, _ in batches)

    def _put_back(self, records: list[Record], barrier: Request | None) -> None:
        """Return records that ``_next_chunk`` took, and its flush barrier, to the buffer's front, in
        their order, as if never taken. Under the lock."""
        back = [*records, *([(BARRIER, barrier)] if barrier is not None else [])]
        self.buffer.extendleft(reversed(back))
        if self._drain_left is not None:
            self._drain_left += len(back)
        if self._spill_left is not None:
            self._spill_left += len(back)
        self.buffered_bytes += sum(map(inline_size, records))

    def _spool_pending(self, reason: BaseException) -> None:
        """Move every unacknowledged batch, and the records buffered when this begins, to the spool file.

        If the spool cannot be written, the buffered records stay in the buffer, where the
        on-full policy bounds them (callers wait, or new events are dropped and counted): at most
        one buffer's worth, cut into batches before the failure showed, waits beside it.
        """
        # Taken under the lock, written outside it, then counted in the file (or put back among
        # the unacknowledged batches) under it again (see _to_spool): pending() counts them in
        # _spilling meanwhile, so it never sees events in neither place nor in two.
        # Each write names the runs this process owns, read after its records were taken, in the
        # file first (Spool.append): no daemon is told them, and its delivery tells one.
        # One spill takes what the buffer holds when it begins, no more (_spill_left): each write
        # leaves the lock to logging calls, and a thread logging faster than a slow spool disk
        # writes refilled the buffer every round, so a spill that took until the buffer was empty
        # never ended, and the thread never tried to connect again (a daemon back for 25 s was
        # said not to answer). The thread tries to connect between spills; the next one takes the rest.
        with self._cond:
            unacked = self._ledger.take_unacked()
            self._spilling += _records(unacked)
            # Sent, so their runs were told first: those ended since have their end among them or
            # in the buffer, which the next writes take.
            owned = self.will.told + self.will.snapshot()
            self._spill_left = len(self.buffer)
        try:
            self._spill_bounded(reason, unacked, owned)
        finally:
            with self._cond:
                self._spill_left = None

    def _spill_bounded(self, reason: BaseException, unacked: list[tuple[int, bytes, int]], owned: tuple[str, ...]) -> None:
        """``_spool_pending``'s writes: ``unacked``, then the buffer's front up to ``_spill_left``."""
        failure = self._to_spool(unacked, owned)
        if failure is not None:
            # The flushes waiting in the buffer learn now why they cannot complete.
            waiting = [record[1] for record in list(self.buffer) if record[0] == BARRIER]
            self._cannot_spool(reason, failure, waiting)
            return
        barriers: list[Request] = []
        more = True
        try:
            while more and failure is None:
                # Written a few MiB at a time: a buffer of inline artifacts was held three times over
                # at once (records, frames, the joined write), 200 MB for a 64 MiB bound.
                with self._cond:
                    batches, owned, more = self._take_for_spool(barriers)
                failure = self._to_spool(batches, owned)
        except BaseException:
            # Their batches are back among the unacknowledged (see _to_spool): the flushes follow
            # them to the next daemon, not lost with the exception (their callers waited out their timeout).
            with self._cond:
                for req in barriers:
                    self._ledger.expect_reply(req)
            raise
        if failure is not None:
            self._cannot_spool(reason, failure, barriers)
            return
        self._spill.announce(self._refusal, now=self._stopping)
        if not self._spill.outlasted_connect_timeout():
            # Spooled because the buffer filled during a short outage (a daemon restarting): the
            # flushes wait on, and go to the daemon after the spool when it answers.
            with self._cond:
                for req in barriers:
                    self._ledger.expect_reply(req)
            return
        # A flush cannot complete without a daemon: it returns with the spool's whereabouts instead.
        self._fail_requests(barriers, self._spill.spooled_error(reason))

    def _take_for_spool(self, barriers: list[Request]) -> tuple[list[tuple[int, bytes, int]], tuple[str, ...], bool]:
        """Under the lock: take the buffer's next MAX_BATCH_BYTES or so as numbered batches for the
        spool file, counted in ``_spilling`` (its flush barriers go to ``barriers``); returns them,
        the runs owned, and whether the buffer holds more for this spill (up to ``_spill_left``)."""
        batches: list[tuple[int, bytes, int]] = []
        size = 0
        while True:
            # Read before the buffer is looked at: a run that left the set had its end queued
            # before, so the loop takes that end too (read after, the end of a run ended in
            # between stayed in the buffer, the run in the file and in no will).
            owned = self.will.snapshot()
            if not self.buffer or self._drain_left == 0 or self._spill_left == 0:
                return batches, owned, False
            if size >= self.MAX_BATCH_BYTES:
                return batches, owned, True
            records, barrier = self._next_chunk()
            # A record that cannot be encoded costs only itself, counted and reported as when
            # sending (it raised out of here, and the records taken so far were lost uncounted).
            # A flush barrier alone is no batch, as on the socket (_encode_batches): each close
            # spooled an empty one, which no daemon had ever seen, so the spool of a process
            # whose events a stalled daemon wrote once resumed still held one batch to deliver,
            # and `trackd sync` "delivered 1 batch" of nothing.
            for batch in self._encode(records, encode_frame) if records else []:
                self._ledger.next_seq()  # the batch's own number: _encode numbers from the next one on
                batches.append(batch)
                size += len(batch[1])
                self._spilling += batch[2]
            if barrier is not None:
                barriers.append(barrier)

    def _to_spool(self, batches: list[tuple[int, bytes, int]], owned: tuple[str, ...]) -> OSError | None:
        """Write ``batches``, taken under the lock and counted in ``_spilling``, to the spool file
        outside the lock; then, under it, count them in the file, or (the OSError returned) put
        them back among the unacknowledged batches, sent when a daemon answers.

        Outside the lock, because the spool disk may be slow or hung (a spool folder on NFS, the
        default under a home folder on many clusters): the lock held through the open, the lock
        and the write held every logging call that drops (TRACKD_ON_FULL=drop), pending(),
        stats(), and the bounded waits of exit and SIGTERM, for as long as the disk did.
        Only this thread sends and spools, so nothing is sent meanwhile.
        """
        written: Written | None = None
        try:
            written = self._spill.write(batches, owned)
        finally:
            # Also when the write raised something else (a MemoryError, a spool folder whose name
            # cannot be encoded): the batches go back among the unacknowledged, sent when a daemon
            # answers. They stayed in _spilling for good, counted pending and in no place.
            with self._cond:
                self._spilling -= _records(batches)
                failure = self._spill.count(written) if written is not None else None
                if written is None or failure is not None:
                    self._ledger.restore_unacked(batches)
        return failure

    def _encode(self, records: list[Record], encode: Callable[[Event], bytes]) -> list[tuple[int, bytes, int]]:
        """The frames of ``records`` as (seq, frame, records) batches numbered from the ledger's next
        (``encode``: the connection's send, or encode_frame for the spool file). Under the lock.

        One batch, unless it cannot be encoded whole: then it is halved until each part can, and a
        record that cannot be encoded alone is counted as refused for the next flush() to report.
        A batch of valid records can exceed MAX_FRAME_SIZE: the sender cuts batches by an estimate
        of 64 bytes a metric record (an exact size would cost the sender a pass over every record),
        and a record's run id and key may take up to ~2 KB (256 and 250 characters of up to 4 bytes
        in UTF-8); 10,000 such records, or fewer before an 8 MiB inline artifact, were lost whole.
        A record the call sites let through and msgpack cannot pack (a lone surrogate) cost its
        whole batch too. Only those, which are rare, pay for the halving.
        """
        batches: list[tuple[int, bytes, int]] = []
        seq = self._ledger.seq
        parts = [records]
        while parts:
            part = parts.pop()
            try:
                frame = encode(batch_of(seq + 1, part))
            except LocalProtocolError as exc:
                if len(part) > 1:
                    half = len(part) // 2
                    parts += (part[half:], part[:half])  # the first half next: the records keep their order
                else:
                    self._ledger.refuse(1, f"{describe_record(part[0])} could not be encoded and was not sent: {exc}")
                continue
            seq += 1
            batches.append((seq, frame, len(part)))
        return batches

    def _abandon(self, reason: DaemonUnavailable) -> None:
        """A flush gave the daemon up (the connection is closed already): spool what it holds.

        Batches sent on the dropped connection go too: a stopped daemon that resumes may write
        them, and then skips them when the spool is replayed (by client id and sequence number).
        """
        try:
            self._spill.give_up()
            self._spool_pending(reason)
        finally:
            with self._cond:
                self._spill_requested = False
                self._cond.notify_all()

    def _cannot_spool(self, reason: BaseException, failure: OSError, barriers: list[Request]) -> None:
        """Neither a daemon nor the spool takes events: flushes fail saying so, and events wait in memory."""
        with self._cond:
            pending = self._pending_locked()
            held = pending - self._spill.records
        self._fail_requests(barriers, self._spill.unwritable_error(reason, failure, pending))
        if not (self._spill_requested or self._spill.gave_up or self._stopping):
            # A flush that gave the daemon up, or the close under way, says it with what it means
            # then (held in memory, or lost); "holding them in memory" just before "lost" misled.
            self._spill.warn_unwritable(failure, held)

    def _fail_requests(self, barriers: list[Request], error: DaemonUnavailable) -> None:
        """Complete the given flush barriers and every request sent to the lost daemon with ``error``."""
        with self._cond:
            self._ledger.fail_requests(barriers, error)
            self._cond.notify_all()


def _records(batches: list[tuple[int, bytes, int]]) -> int:
    """The records in (seq, frame, records) batches."""
    return sum(records for _, _, records in batches)
