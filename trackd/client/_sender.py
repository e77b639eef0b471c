"""The sender: a buffer the caller appends to, and the one thread that talks to the daemon.

The caller's path is ``buffer.append(record)`` plus one length check (see ``Client.log_metric``);
it never encodes, never touches the socket and never blocks while there is room. The sender
thread wakes every ``flush_interval`` seconds (or early when the buffer grows), packs what is
buffered into numbered batches, sends them, and keeps each batch until the daemon acknowledges
it as written, so a daemon that dies or restarts costs nothing: the batches are sent again.
A daemon that stops answering without going away (SIGSTOP, a debugger, a stuck disk) is given up
when a bounded flush (exit, end_run, close) runs out of time: the thread drops the connection and
moves everything not acknowledged to the spool file, and every wait on the socket can be cut
short for that (``_transport.Interrupt``).

This module moves the bytes and decides when. What was sent and is not settled yet, and what the
daemon's replies settle, is the ledger's (``_ledger.py``); when events go to the spool file instead,
and what a flush is told then, is the spill's (``_spill.py``).
"""

from __future__ import annotations

import collections
import os
import select
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import DaemonUnavailable, DeliveryError, FlushTimeout, LocalProtocolError, TrackdError
from ..protocol import (
    CREATE_RUN, NEED_DATA, SET_TERMINATED, Ack, Connection, ConnectionClosed, Dropped, Event, Flush, Record, encode_frame,
)
from ._config import ClientConfig
from ._launcher import DaemonExited, start_daemon
from ._ledger import Ledger
from ._names import random_id
from ._outbox import BARRIER, FlushReport, Request, batch_of, log_exception, next_chunk, warn
from ._spill import Spill

if TYPE_CHECKING:
    from ._client import Client
from ._transport import Interrupt, Transport, gave_up_error, handshake, make_hello


class Sender:
    """Owns the event buffer, the sender thread and the connection to the daemon."""

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

    client_id: str
    buffer: collections.deque[Record]
    wake_at: int
    _cond: threading.Condition
    _thread: threading.Thread | None
    _stopping: bool
    _spill_requested: bool
    _held_reported: int
    _gave_up_announced: bool
    _unannounced: int
    _closed: bool
    _transport: Transport | None
    _protocol: Connection | None
    _ledger: Ledger
    _spill: Spill
    _dropped: int
    _dropped_reported: int
    _warned_full: bool
    _warned_unavailable: bool
    _next_spawn: float
    _wake_r: int
    _wake_w: int

    def __init__(self, config: ClientConfig, store_root: str) -> None:
        self.config = config
        self.store_root = store_root
        self._reset()
        self._closed = False
        # The Clients that use this sender (Clients of one store and config share it).
        self.users: weakref.WeakSet[Client] = weakref.WeakSet()
        # CreateRun records of runs created through this sender since the last flush(): any of its
        # Clients may log to them at once, as the creation travels ahead in this buffer. A forked
        # child sends them again before its first log to such a run (it has its own connection).
        self.creations: dict[str, Record] = {}
        self.inherited_creations: dict[str, Record] = {}
        # The child of a fork must not send its parent's buffer or share its socket (sentry's
        # monitor.py explains why a lazily restarted worker is the safe pattern): see
        # _senders_after_fork, one hook for every sender (a hook each piled up, never removed).
        _LIVE_SENDERS.add(self)

    # -- the caller's side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Slow path of an append: start the thread, send early, or apply the on-full policy."""
        if self._thread is None:
            self._start()
        if len(self.buffer) >= self.config.max_buffered:
            self._on_full()
        else:
            # No further wake-ups until the thread has drained the buffer (it re-arms wake_at).
            self.wake_at = self.config.max_buffered
        self._poke()

    def submit(self, record: Record) -> None:
        """Append one record (the Client's slower methods use this; metrics append inline).

        A run's creation or end is not waited for nor dropped by the on-full policy while the
        buffer holds fewer than RUN_RECORD_SLACK records past its bound: without it every point
        of the run is refused, or the run stays RUNNING. (end_run on SIGTERM or Ctrl-C waited for
        room that a stalled daemon never made, so the process hung instead of spooling and
        exiting.) Past the slack they follow the policy too, so a loop of create_run and
        set_terminated at a stalled daemon cannot grow the buffer without bound.
        """
        buffer = self.buffer
        buffer.append(record)
        if len(buffer) >= self.wake_at:
            if record[0] in _RUN_RECORDS and self.config.max_buffered <= len(buffer) < self.config.max_buffered + RUN_RECORD_SLACK:
                self._ensure_started()
                self._poke()
            else:
                self.wake()

    def request(self, build: Callable[[int], Event], timeout: float | None = None) -> Event:
        """Send a request built by ``build(request_id)`` and wait for its reply."""
        req = self._new_request(build)
        with self._cond:
            self._ledger.queue(req)
        self._ensure_started()
        self._poke()
        return self._wait(req, self.config.connect_timeout if timeout is None else timeout)

    def flush(self, timeout: float | None = None, *, take_failures: bool = True) -> FlushReport:
        """Wait until every record appended so far is written to the store.

        Raises DeliveryError naming each item the daemon refused since the last flush that took
        them, FlushTimeout when ``timeout`` runs out, and DaemonUnavailable when no daemon could
        be reached for ``connect_timeout`` seconds (the events stay buffered and are sent later).
        With ``take_failures=False`` (a read, a sibling Client's close, end_run) refused items stay
        for the next flush() of any Client of this sender, or for the warning of its close().
        """
        if self._thread is None and not self.buffer:
            return self._report()
        req = self._new_request(lambda request_id: Flush(request_id=request_id))
        self.buffer.append((BARRIER, req))
        self._ensure_started()
        self._poke()
        self._wait(req, timeout)
        if take_failures:
            self._raise_failures()
        return self._report()

    def _raise_failures(self) -> None:
        """DeliveryError naming the items the daemon refused since they were last taken, if any."""
        with self._cond:
            failures = self._ledger.take_failures()
        if failures:
            raise DeliveryError(
                f"The daemon refused {len(failures)} logged item(s): {failures[0]}"
                + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""),
                failures,
            )

    def pending(self) -> int:
        """Records accepted but not yet acknowledged as written (spooled ones included)."""
        with self._cond:
            return self._pending_locked()

    def stats(self) -> dict[str, object]:
        """Counters for status lines and tests."""
        with self._cond:
            return {
                "client_id": self.client_id,
                "buffered": len(self.buffer),
                "unacked_batches": len(self._ledger.unacked),
                "unacked_events": self._ledger.unacked_events,
                "acked_seq": self._ledger.acked_seq,
                "sent_seq": self._ledger.seq,
                "dropped": self._dropped,
                "rejected": self._ledger.rejected,
                "connected": self._transport is not None,
                "spooled": self._spill.records,
            }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        """Flush (waiting at most ``timeout``, then spooling what is left), then stop the thread. Idempotent."""
        if self._closed:
            return
        try:
            if self._thread is not None or self.buffer:
                # The last word on this sender's refused items: printed here, once.
                self.flush_or_warn(self.config.exit_timeout if timeout is None else timeout, take_failures=True, final=True)
        finally:
            self._closed = True
            _LIVE_SENDERS.discard(self)
            self._stopping = True
            self._poke()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(self.STOP_TIMEOUT)
                if thread.is_alive() and not self._spill_requested:
                    # Still at work for a daemon that stopped answering after the flush: the rest
                    # goes to the spool too. (A thread that has not answered a spill request yet
                    # will not answer this one sooner.)
                    self._give_up_on_daemon(
                        f"the daemon at {self.config.socket_path} did not answer within {self.STOP_TIMEOUT:g} s of close()",
                        final=True,
                    )
            # Only the sender thread uses the socket and reads the wake pipe: close them here
            # only once that thread is gone (a Client made per call must not leak two fds each).
            if thread is None or not thread.is_alive():
                if self._transport is not None:
                    self._transport.close()
                    self._transport = None
                wake_r, wake_w = self._wake_r, self._wake_w
                self._wake_r = self._wake_w = -1  # a late _poke() writes to no descriptor
                for fd in (wake_r, wake_w):
                    if fd >= 0:
                        os.close(fd)

    # -- internals shared by both sides ------------------------------------------------------------

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self.client_id = random_id()
        self.buffer = collections.deque()
        # The first append starts the thread; after that, wake early at MAX_BEFORE_SEND.
        self.wake_at = 0
        # Reentrant: the SIGTERM handler may flush while the interrupted main thread holds it.
        self._cond = threading.Condition(threading.RLock())
        self._thread = None
        self._stopping = False
        # A flush gave the daemon up: the thread spools everything and clears this.
        self._spill_requested = False
        self._held_reported = 0
        # Events spooled by give-ups since the last line said so (see _give_up_on_daemon).
        self._gave_up_announced = False
        self._unannounced = 0
        self._transport = None
        self._protocol = None
        self._interrupt: Interrupt | None = None
        self._poked_while_away = False
        self._ledger = Ledger()
        self._spill = Spill(self.config, self.client_id, self.store_root)
        self._dropped = 0
        self._dropped_reported = 0
        self._warned_full = False
        self._warned_unavailable = False
        self._next_spawn = 0.0
        self._spawn_failure: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def _after_fork_in_child(self) -> None:
        self.inherited_creations = {**self.inherited_creations, **self.creations}
        self.creations = {}
        transport = self._transport
        self._spill.abandon()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._reset()
        if transport is not None:
            # Closing our copy of the fd leaves the parent's connection untouched.
            transport.close()
        self._closed = False
        # Then the Clients that share this sender forget what the child must create again.
        for user in list(self.users):
            user._after_fork_in_child()
        if "multiprocessing" in sys.modules:
            # multiprocessing's fork children leave through os._exit, which skips atexit; its own
            # exit hook runs finalizers. But a child clears the finalizer registry right after
            # this hook (Process._bootstrap), then runs its after-fork callbacks: register there.
            import multiprocessing.util

            multiprocessing.util.register_after_fork(self, Sender._finalize_in_multiprocessing_child)

    def _finalize_in_multiprocessing_child(self) -> None:
        import multiprocessing.util

        multiprocessing.util.Finalize(self, self.close, exitpriority=100)

    def _new_request(self, build: Callable[[int], Event]) -> Request:
        with self._cond:
            return self._ledger.new_request(build)

    def _ensure_started(self) -> None:
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            if self._closed:
                raise RuntimeError("Cannot log through a trackd client after close().")
            self.wake_at = self._early_wake()
            self._thread = threading.Thread(target=self._run, name="trackd-sender", daemon=True)
            self._thread.start()

    def _early_wake(self) -> int:
        """Wake the thread early at a batch's worth of records, or sooner under a small buffer bound."""
        return min(self.MAX_BEFORE_SEND, self.config.max_buffered)

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe already wakes the thread

    def _on_full(self) -> None:
        if self.config.on_full == "drop":
            with self._cond:
                # Drop the newest records until there is room again (log_metrics appends several);
                # a flush barrier is never dropped, or its flush() would wait for ever.
                barriers: list[Record] = []
                while len(self.buffer) >= self.config.max_buffered:
                    try:
                        record = self.buffer.pop()
                    except IndexError:
                        break
                    if record[0] == BARRIER or (record[0] in _RUN_RECORDS and len(barriers) < RUN_RECORD_SLACK):
                        barriers.append(record)  # kept, in order (see submit)
                    else:
                        self._dropped += 1
                self.buffer.extend(reversed(barriers))
                first = not self._warned_full
                self._warned_full = True
            if first:
                warn(
                    f"the event buffer is full ({self.config.max_buffered} events) because the daemon is not "
                    "keeping up; new events are dropped and counted (TRACKD_ON_FULL=drop)."
                )
            return
        with self._cond:
            first = not self._warned_full
            self._warned_full = True
        if first:
            warn(
                f"the event buffer is full ({len(self.buffer)} events) because the daemon is not keeping up; "
                "logging calls wait for room (TRACKD_ON_FULL=block)."
            )
        with self._cond:
            while len(self.buffer) >= self.config.max_buffered and not self._stopping:
                self._cond.wait(0.1)

    def _wait(self, req: Request, timeout: float | None) -> Event:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not req.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise FlushTimeout(
                        f"The trackd daemon did not answer within {timeout:g} s; "
                        f"{self._pending_locked()} events are still on their way to the store."
                    )
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _pending_locked(self) -> int:
        spooled = self._spill.records
        # Logging calls append without the lock, so a Python-level loop over the buffer itself can
        # raise "deque mutated during iteration" (it killed the sender thread once, when it counted
        # pending events after losing the daemon); copy() runs in C, under the GIL, in one piece.
        snapshot = self.buffer.copy()
        buffered = len(snapshot) - sum(1 for record in snapshot if record[0] == BARRIER)
        return buffered + self._ledger.unacked_events + spooled

    def _report(self) -> FlushReport:
        with self._cond:
            return FlushReport(acked_batches=self._ledger.acked_seq, dropped=self._dropped, pending=self._pending_locked())

    def flush_or_warn(self, timeout: float, *, take_failures: bool = False, final: bool = False) -> None:
        """Flush with a bounded wait, saying on stderr what is waiting and what was given up.

        When ``timeout`` runs out, what the daemon has not acknowledged goes to the spool file
        and one line says how many events and where: a daemon that is stopped rather than gone
        would otherwise keep them out of the store for good if this process exits. Until a daemon
        answers again, later calls do not wait for it a second time: exit ends the runs and then
        closes the clients, and each of those flushes with this bound.
        """
        path = self.config.socket_path
        if self.pending() == 0 and not self._spill.gave_up:
            # Nothing to deliver (a process whose only request found no daemon): nothing to say,
            # but the refused items already received, which this close reports.
            if take_failures:
                try:
                    self._raise_failures()
                except DeliveryError as exc:
                    warn(str(exc))
            return
        if self._spill.gave_up:
            self._give_up_on_daemon(f"the daemon at {path} has not answered since an earlier flush gave it up", final=final)
            return
        start = time.monotonic()
        try:
            self.flush(timeout=min(1.0, timeout), take_failures=take_failures)
            return
        except FlushTimeout:
            pass
        except DaemonUnavailable as exc:
            if not self._spill.spooling:  # the spool already said where the events are
                warn(str(exc))
            return
        except TrackdError as exc:
            warn(str(exc))
            return
        remaining = timeout - (time.monotonic() - start)
        if remaining > 0:
            warn(f"waiting up to {remaining:.0f} s for {self.pending()} events to reach the daemon at {path}.")
            try:
                self.flush(timeout=remaining, take_failures=take_failures)
                return
            except FlushTimeout:
                pass
            except DaemonUnavailable as exc:
                if not self._spill.spooling:  # the spool already said where the events are
                    warn(f"{self.pending()} events were not delivered: {exc}")
                return
            except TrackdError as exc:
                warn(f"{self.pending()} events were not delivered: {exc}")
                return
        self._give_up_on_daemon(f"the daemon at {path} did not answer within {timeout:g} s", final=final)

    def _give_up_on_daemon(self, reason: str, *, final: bool = False) -> None:
        """Have the thread spool everything the daemon has not acknowledged, then say what went where.

        Waits at most SPILL_TIMEOUT. Events already in the spool were announced before, by the
        spill or by an earlier give-up; only the ones added now are counted. Once a give-up has
        been announced, later ones (each sibling Client's close) add theirs quietly until the
        sender closes (``final``), which says how many more went: one line each, not one a close.
        """
        before = self._spill.records
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            with self._cond:
                self._spill_requested = True
            self._poke()
            deadline = time.monotonic() + self.SPILL_TIMEOUT
            with self._cond:
                while self._spill_requested and thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(min(left, 0.05))
        with self._cond:
            spooled = self._spill.records
            held = self._pending_locked() - spooled
        self._unannounced += max(0, spooled - before)
        if self._unannounced and (final or not self._gave_up_announced):
            warn(self._spill.gave_up_message(self._unannounced, reason, more=spooled > self._unannounced))
            self._gave_up_announced = True
            self._unannounced = 0
        if held > 0 and held != self._held_reported:
            self._held_reported = held
            warn(
                f"{held} events were not delivered: {reason}; they are not in the spool file but held in "
                "memory, and are lost if this process exits."
            )

    # -- the sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._spill_requested:
                    raise gave_up_error(self.config.socket_path)
                if self._transport is None:
                    self._connect()
                    backoff = 0.05
                self._cycle()
            except DaemonUnavailable as exc:
                try:
                    # Giving up is not news: the flush that asked for it says what it spooled.
                    self._disconnected(None if self._spill_requested else exc)
                    if self._spill_requested:
                        self._abandon(exc)
                    elif self._stopping or self._spill.should_spool(len(self.buffer)):
                        self._spool_pending(exc)
                except Exception:  # raised here it would escape the handler below and end the thread
                    log_exception("trackd sender thread failed while the daemon was unavailable; retrying")
                if self._stopping:
                    return
                self._sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # a bug here must never kill logging silently
                log_exception("trackd sender thread failed; retrying")
                self._disconnected(None)
                self._sleep(1.0)
            if self._stopping and self._transport is None:
                return
            if self._stopping and not self.buffer and self._ledger.settled():
                return

    def _cycle(self) -> None:
        transport = self._transport
        assert transport is not None
        wait = self.config.flush_interval
        interrupt = self._interrupt
        if interrupt is not None and interrupt.poked:
            # A wait on the socket (the handshake, a send) emptied the pipe of a poke that asked
            # for this loop (a flush): act on it now. (The first flush of a process waited a
            # whole send interval, 50 ms, for it.)
            interrupt.poked = False
            wait = 0.0
        ready = _readable([self._wake_r, transport.fileno()], wait)
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self._spill_requested:
            return  # _run gives the daemon up
        self._read_replies()
        self._send_requests()
        self._send_buffer()
        if self._dropped != self._dropped_reported:
            # Dropped events are counted where the daemon's status shows them too.
            self._dropped_reported = self._dropped
            self._send_event(Dropped(total=self._dropped))

    def _sleep(self, seconds: float) -> None:
        """Back off, waking early when poked; the poke is used up here (the loop's next step,
        connecting again, is what it asks for), or every later backoff would return at once and
        the thread would spin while no daemon answers."""
        if _readable([self._wake_r], seconds):
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            # What poked (a flush) still wants the loop's attention once connected.
            self._poked_while_away = True

    def _connect(self) -> None:
        path = self.config.socket_path
        hello = make_hello(self.client_id, self.store_root)
        interrupt = self._interrupt = Interrupt(self._wake_r, self._should_stop_waiting)
        interrupt.poked, self._poked_while_away = self._poked_while_away, False
        try:
            transport, protocol, welcome = handshake(path, hello, timeout=self.config.connect_timeout, interrupt=interrupt)
        except DaemonUnavailable:
            if not self.config.autostart or self._stopping or self._spill_requested:
                raise
            self._start_daemon()
            transport, protocol, welcome = handshake(path, hello, timeout=self.config.connect_timeout, interrupt=interrupt)
        with self._cond:
            self._transport = transport
            self._protocol = protocol
            self._ack(welcome.resume_seq)
            spooled = self._spill.frames_after(welcome.resume_seq)
            resend = [frame for _, frame, _ in self._ledger.unacked]
            in_flight = sorted(self._ledger.in_flight.values(), key=lambda r: r.request_id)
        self._spill.answered()
        self._gave_up_announced = False  # a new stall is news again
        self._unannounced = 0  # (what it spooled quietly goes to the daemon from the spool now)
        if self._warned_unavailable:
            warn(
                f"reconnected to the daemon at {path}; resending {len(spooled)} spooled and "
                f"{len(resend)} unacknowledged batches."
            )
            self._warned_unavailable = False
        # Everything not acknowledged goes again, oldest first (the spool holds the oldest), then
        # the requests waiting on it. The daemon skips batches it already holds.
        for frame in spooled:
            transport.send(frame)
        for frame in resend:
            transport.send(frame)
        self._spill.deliver_orphans_once()
        for req in in_flight:
            transport.send(protocol.send(req.build(req.request_id)))

    def _should_stop_waiting(self) -> bool:
        """Whether a wait on the socket is to be cut short: a flush gave the daemon up, or the
        client is closing before a handshake completed (a send to a daemon that answers is
        finished instead, so a closing client does not cut a healthy connection)."""
        return self._spill_requested or (self._stopping and self._transport is None)

    def _start_daemon(self) -> None:
        now = time.monotonic()
        if now < self._next_spawn:
            raise DaemonUnavailable(
                f"No trackd daemon answers at {self.config.socket_path} yet."
                + (f" The last one started exited: {self._spawn_failure}" if self._spawn_failure else "")
            )
        self._next_spawn = now + self.SPAWN_INTERVAL
        try:
            start_daemon(self.config.socket_path, timeout=self.config.connect_timeout)
        except DaemonExited as exc:
            # Its flags or store made it exit: the same again a second later (it was started
            # every second, each time writing its usage to the log).
            self._next_spawn = now + self.SPAWN_INTERVAL_AFTER_EXIT
            self._spawn_failure = str(exc)
            raise
        self._spawn_failure = None

    def _disconnected(self, exc: BaseException | None) -> None:
        if self._transport is not None:
            self._transport.close()
        with self._cond:
            self._transport = None
            self._protocol = None
            self._spill.lost()
            # Requests not yet sent stay queued; sent ones are resent after reconnecting.
            self._cond.notify_all()
        if exc is not None and not self._warned_unavailable and not self._stopping:
            self._warned_unavailable = True
            warn(f"{exc} Holding {self.pending()} events and retrying.")

    def _read_replies(self) -> None:
        transport, protocol = self._transport, self._protocol
        assert transport is not None and protocol is not None
        while (data := transport.receive_available()) is not None:
            protocol.receive_data(data)
            while (event := protocol.next_event()) is not NEED_DATA:
                if isinstance(event, ConnectionClosed):
                    raise DaemonUnavailable("The trackd daemon closed the connection.")
                assert isinstance(event, Event)
                self._on_event(event)
            if not data:
                raise DaemonUnavailable("The trackd daemon closed the connection.")

    def _on_event(self, event: Event) -> None:
        with self._cond:
            if isinstance(event, Ack):
                self._ack(event.seq)
            else:
                self._ledger.settle(event)
            self._cond.notify_all()

    def _ack(self, seq: int) -> None:
        """Settle batches up to ``seq``, spooled ones included (called with the lock held)."""
        self._ledger.ack(seq)
        self._spill.acked(seq)

    def _send_requests(self) -> None:
        while self._ledger.outgoing:
            with self._cond:
                req = self._ledger.next_outgoing()
            self._send_event(req.build(req.request_id))

    def _send_event(self, event: Event) -> None:
        assert self._transport is not None and self._protocol is not None
        self._transport.send(self._protocol.send(event))

    def _next_chunk(self) -> tuple[list[Record], Request | None]:
        # Under the lock the drop policy pops with: next_chunk pops a counted number of records,
        # which a concurrent drop from the other end could leave missing.
        with self._cond:
            return next_chunk(self.buffer, self.MAX_RECORDS_PER_BATCH, self.MAX_BATCH_BYTES)

    def _send_buffer(self) -> None:
        ledger, config = self._ledger, self.config
        # The window: what waits for its ack is bounded in events and in bytes (see _config).
        while (
            self.buffer
            and ledger.unacked_events < config.max_unacked_events
            and ledger.unacked_bytes < config.max_unacked_bytes
        ):
            # Popped, encoded and kept as unacknowledged under one lock, so pending() never finds
            # a chunk in neither place (logging calls do not take it); the socket write is outside.
            with self._cond:
                records, barrier = self._next_chunk()
                if barrier is not None:
                    # In flight before the batch ahead of it is sent: if that send breaks, a reconnect
                    # resends the batch and then the barrier, which would otherwise be lost.
                    self._ledger.expect_reply(barrier)
                frame = self._encode_batch(records)
            if frame is not None:
                assert self._transport is not None
                self._transport.send(frame)
            if barrier is not None:
                self._send_event(barrier.build(barrier.request_id))
            with self._cond:
                self._cond.notify_all()  # room in the buffer for callers waiting under "block"
        if len(self.buffer) < self._early_wake():
            self.wake_at = self._early_wake()

    def _encode_batch(self, records: list[Record]) -> bytes | None:
        """The next batch's frame, kept until acknowledged; None when there is nothing to send. Under the lock."""
        if not records:
            return None
        assert self._protocol is not None
        seq = self._ledger.seq + 1
        try:
            frame = self._protocol.send(batch_of(seq, records))
        except LocalProtocolError as exc:
            # Call-site checks should make this impossible; if not, say what was lost, never hide it.
            self._ledger.refuse(len(records), f"{len(records)} records could not be encoded and were not sent: {exc}")
            return None
        self._ledger.sent(seq, frame, len(records))
        return frame

    # -- the spill: no daemon answers --------------------------------------------------------------

    def _spool_pending(self, reason: BaseException) -> None:
        """Move every unacknowledged batch and every buffered record to the spool file.

        If the spool cannot be written, the buffered records stay in the buffer, where the
        on-full policy bounds them (callers wait, or new events are dropped and counted): at most
        one buffer's worth, cut into batches before the failure showed, waits beside it.
        """
        # Under the lock from taking to placing, so pending() never sees events in neither place
        # (a caller's pending() or stats() waits for this spill; logging calls do not).
        with self._cond:
            unacked = self._ledger.take_unacked()
            failure = self._spill.write(unacked)
            if failure is not None:
                self._ledger.restore_unacked(unacked)
        if failure is not None:
            # The flushes waiting in the buffer learn now why they cannot complete.
            waiting = [record[1] for record in list(self.buffer) if record[0] == BARRIER]
            self._cannot_spool(reason, failure, waiting)
            return
        batches: list[tuple[int, bytes, int]] = []
        barriers: list[Request] = []
        with self._cond:
            while self.buffer:
                records, barrier = self._next_chunk()
                if records:
                    seq = self._ledger.next_seq()
                    batches.append((seq, encode_frame(batch_of(seq, records)), len(records)))
                if barrier is not None:
                    barriers.append(barrier)
            failure = self._spill.write(batches)
            if failure is not None:
                self._ledger.restore_unacked(batches)
        if failure is not None:
            self._cannot_spool(reason, failure, barriers)
            return
        self._spill.announce()
        if not self._spill.outlasted_connect_timeout():
            # Spooled because the buffer filled during a short outage (a daemon restarting): the
            # flushes wait on, and go to the daemon after the spool when it answers.
            with self._cond:
                for req in barriers:
                    self._ledger.expect_reply(req)
            return
        # A flush cannot complete without a daemon: it returns with the spool's whereabouts instead.
        self._fail_requests(barriers, self._spill.spooled_error(reason))

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
        self._fail_requests(barriers, self._spill.unwritable_error(reason, failure, self.pending()))
        self._spill.warn_unwritable(failure)

    def _fail_requests(self, barriers: list[Request], error: DaemonUnavailable) -> None:
        """Complete the given flush barriers and every request sent to the lost daemon with ``error``."""
        with self._cond:
            self._ledger.fail_requests(barriers, error)
            self._cond.notify_all()


# Every sender not closed, for the fork hook below.
_LIVE_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _senders_after_fork() -> None:
    """In a forked child: every open sender drops its parent's buffer, thread and socket."""
    for sender in list(_LIVE_SENDERS):
        sender._after_fork_in_child()


os.register_at_fork(after_in_child=_senders_after_fork)

# Records the on-full policy does not wait for nor drop, up to RUN_RECORD_SLACK past the bound
# (see Sender.submit).
_RUN_RECORDS = frozenset((CREATE_RUN, SET_TERMINATED))
RUN_RECORD_SLACK = 64


def _readable(fds: list[int], timeout: float) -> list[int]:
    """The descriptors of ``fds`` that are readable within ``timeout`` seconds. poll(), not
    select(): select() refuses descriptors past 1024, which a training process that holds many
    files open hands out, and the sender thread died of it."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(0.0, timeout) * 1000.0)]

