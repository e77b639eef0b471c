"""The sender: a buffer the caller appends to, and the one thread that talks to the daemon.

The caller's path is ``buffer.append(record)`` plus one length check (see ``Client.log_metric``);
it never encodes, never touches the socket and never blocks while there is room. The sender
thread wakes every ``flush_interval`` seconds (or early when the buffer grows), packs what is
buffered into numbered batches, sends them, and keeps each batch until the daemon acknowledges
it as written, so a daemon that dies or restarts costs nothing: the batches are sent again.
A daemon that stops answering without going away (SIGSTOP, a debugger, a stuck disk) is given up
when a bounded flush (exit, end_run, close) runs out of time, or a logging call has waited for room
through TRACKD_CONNECT_TIMEOUT of its silence: the thread drops the connection and
moves everything not acknowledged to the spool file, and every wait on the socket can be cut
short for that (``_transport.Interrupt``).

This module moves the bytes and decides when. What was sent and is not settled yet, and what the
daemon's replies settle, is the ledger's (``_ledger.py``); when events go to the spool file instead,
and what a flush is told then, is the spill's (``_spill.py``). The thread's own half (connecting,
sending, reading replies, spooling) is ``SenderThread`` in ``_sender_thread.py``; what a call does
past the buffer's bounds (events, and bytes of inline artifacts) is ``OnFullPolicy`` in
``_on_full.py``; what a bounded flush does when the daemon does not answer, and the lines that say
what became of the events, is ``GiveUp`` in ``_give_up.py``; this module is the caller's half and
the lifecycle (buffer, flush, close, fork).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._signals import start_without_signals, wait_keeping_lock
from ..errors import DaemonUnavailable, FlushTimeout, LocalProtocolError
from ..protocol import Event, Flush, Record, attach_creation
from ._config import ClientConfig
from ._control import listener_pid, stopped_words, unanswered_words
from ._give_up import GiveUp
from ._lifecycle import exit_hurried
from ._ledger import Ledger
from ._media_folders import MediaFolders
from ._names import random_id
from ._on_full import _RUN_RECORDS, RUN_RECORD_SLACK
from ._outbox import BARRIER, FlushReport, Request, events, warn, warn_late
from ._spill import Spill
from ._spool_fds import on_fork_in_child
from ._transport import Interrupt, refused_words
from ._will import Will

if TYPE_CHECKING:
    from ._client import Client

class Sender(GiveUp):
    """Owns the event buffer, the sender thread and the connection to the daemon."""

    def __init__(self, config: ClientConfig, store_root: str, artifact_root: str | None = None) -> None:
        self.config = config
        self.store_root = store_root
        self.artifact_root = artifact_root
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
        # The thread starts now and connects to a running daemon at once (its Hello sent, the
        # Welcome read), so the process's first events wait for no handshake: a short script that
        # logs a few values and leaves by os._exit lost its run when the thread first connected
        # once the run's creation was buffered (docs/guarantees.md row 3). Not in a forked child's
        # sender (_reset): a worker that logs nothing costs no thread and no connection.
        self._start(ahead=True)

    # -- the caller's side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Slow path of an append: start the thread, send early, or apply the on-full policy."""
        if self._closed:
            # Another thread logs to a sender that has stopped (exit closed it): nothing sends
            # this any more. Counted here, on the slow path, not on every call; see take_late.
            self._take_late()
            return
        if not self._used:
            self._start()
        if len(self.buffer) >= self.config.max_buffered:
            # Wake the thread before waiting for the room only it makes: otherwise a blocked call
            # waited out the send interval (50 ms) for every buffer's worth, and a small
            # TRACKD_MAX_BUFFERED throttled a loop to a tenth of what the daemon writes.
            self._poke()
            self._on_full()
            return
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
            if (
                record[0] in _RUN_RECORDS and self.config.max_buffered <= len(buffer) < self.config.max_buffered + RUN_RECORD_SLACK
                and not self._closed
            ):
                self._ensure_started()
                self._poke()
            else:
                self.wake()

    def submit_artifact(self, record: Record) -> None:
        """Append an artifact record; its inline content counts against the byte bound (see ``_on_full.py``)."""
        content = record[3]
        if content and not self._closed:
            if not self.admit_artifact(record, len(content)):
                return  # dropped and counted (TRACKD_ON_FULL=drop)
            if len(self.buffer) >= self.wake_at:
                self.wake()
            return
        self.submit(record)

    def claim_inherited_creation(self, run_id: str) -> bool:
        """Whether ``run_id`` was created through this sender, after sending its creation again
        first if the run was the parent's at a fork (``inherited_creations``).

        The parent may not have delivered the creation before the fork, and the child's points
        travel on another connection. One lock covers taking the creation, queueing it and noting
        it in ``creations``: a second thread of the child, logging its first point to that run at
        the same moment, found it in neither dict between the two and raised RunNotFound, or
        queued its point ahead of the creation.
        """
        with self._creation_lock:
            creation = self.inherited_creations.pop(run_id, None)
            if creation is not None:
                # Only to make sure the run exists: the parent's own create says what the run is,
                # and the parent may have renamed it since (set_tag of mlflow.runName), which this
                # copy, arriving later, must not undo. Queued first, then recorded (as
                # Client.create_run does for a flush in another thread).
                creation = attach_creation(creation)
                self.submit(creation)
                self.creations[run_id] = creation
            return run_id in self.creations

    def request(self, build: Callable[[int], Event], timeout: float | None = None) -> Event:
        """Send a request built by ``build(request_id)`` and wait for its reply."""
        req = self._new_request(build)
        failed = self._failed_connects
        with self._cond:
            self._ledger.queue(req)
        self._ensure_started()
        self._poke()

        def refused_for_good() -> bool:
            # An older daemon still running after an upgrade (another protocol version), or one
            # that could not start, or none and autostart off (a benchmark suite's every job waited
            # its whole connect timeout, then failed): set_experiment waited for nothing.
            return self._no_daemon_since(failed) and (
                self._refusal is not None or self._spawn_failure is not None or not self.config.autostart
            )

        return self._wait(req, self.config.connect_timeout if timeout is None else timeout, refused_for_good)

    def ask(self, what: str, build: Callable[[int], Event]) -> Event:
        """request() within connect_timeout; ``what`` ("create experiment 'x'") names it in errors.

        No daemon reached within connect_timeout raises DaemonUnavailable, as docs/api.md says, rather
        than the sender's FlushTimeout, which counts pending events and means nothing here.
        """
        timeout = self.config.connect_timeout
        cause: DaemonUnavailable | None = None
        try:
            return self.request(build, timeout)
        except FlushTimeout:
            if self._transport is not None:
                raise FlushTimeout(
                    f"Cannot {what}: the trackd daemon at {self.config.socket_path} did not answer within {timeout:g} s."
                ) from None
        except DaemonUnavailable as exc:
            cause = exc
        except LocalProtocolError as exc:  # it could not be sent (see SenderThread._send_request)
            raise LocalProtocolError(f"Cannot {what}: {exc}") from None
        refusal = self._refusal
        if refusal is not None:
            raise DaemonUnavailable(f"Cannot {what}: {refused_words(self.config.socket_path, refusal)}.") from cause
        failure = self._spawn_failure
        if failure is not None:
            # "Start one with `trackd daemon start`" would fail the same way: say why instead.
            started = "" if self._spawn_stopped else ", and none could be started."  # they ran, and were stopped
            raise DaemonUnavailable(
                f"Cannot {what}: no trackd daemon answers at {self.config.socket_path}{started or ':'} {failure}"
            ) from cause
        if (
            self._transport is None
            and not self._daemon_leaving  # it refused the Hello: shutting down, not hung
            and (pid := listener_pid(self.config.socket_path, ask=False, timeout=0.5)) is not None
            and (stopped_words(pid) is not None or self._starting_words() is None)
        ):
            # Something listens and did not answer, stopped, or hung while no start is under way:
            # said to be "unreachable; ... none could be started. Start one with `trackd daemon
            # start`", or "starting", at random. (A probe short of 5 s: a stopped daemon's listen
            # queue full of abandoned handshakes makes connect() wait.)
            raise DaemonUnavailable(f"Cannot {what}: {unanswered_words(self.config.socket_path, pid, timeout)}.") from cause
        if (starting := self._starting_words()) is not None:
            # Another process holds the start lock and started none: "none could be started. Start
            # one with `trackd daemon start`" was said, and that start would wait for the lock too.
            raise DaemonUnavailable(f"Cannot {what}: {starting} and did not answer within {timeout:g} s.") from cause
        if not self.config.autostart:
            raise DaemonUnavailable(
                f"Cannot {what}: the trackd daemon at {self.config.socket_path} is unreachable, and autostart is off "
                "(TRACKD_AUTOSTART=0). Start one with `trackd daemon start`."
            ) from cause
        raise DaemonUnavailable(
            f"Cannot {what}: the trackd daemon at {self.config.socket_path} is unreachable; none answered within "
            f"{timeout:g} s and none could be started. Start one with `trackd daemon start`."
        ) from cause

    def flush(
        self, timeout: float | None = None, *, take_failures: bool = True, stop_waiting: Callable[[], bool] | None = None,
        patient: bool = False, start: float | None = None,
    ) -> FlushReport:
        """Wait until every record appended so far is written to the store.

        Raises DeliveryError naming each item the daemon refused since the last flush that took
        them, FlushTimeout when ``timeout`` runs out (or, sooner, once ``stop_waiting()`` is true),
        and DaemonUnavailable when no daemon could be reached for ``connect_timeout`` seconds (the
        events stay buffered and are sent later). With ``take_failures=False`` (a read, a sibling
        Client's close, end_run) refused items stay for the next flush() of any Client of this
        sender, or for the warning of its close(). ``patient`` (a read): ``timeout`` counts from
        the daemon's last reply, so the wait goes on while the daemon writes what was logged
        before it (a spool file of hundreds of MB resent after a restart), however long that takes.
        ``start``: when the wait began, if before this call (``flush_or_warn``'s second wait).
        """
        if not self._used and not self.buffer and self._ledger.settled():
            return self._report()
        req = self._append_barrier()
        self._wait(req, timeout, stop_waiting, patient=patient, start=start)
        # Their barriers are answered before this one: the media folders written go now. (A forked
        # child that ends with flush() and os._exit left its copies for the next delivery to find.)
        self._remove_written_folders()
        if take_failures:
            self._raise_failures()
        return self._report()

    def stats(self) -> dict[str, object]:
        """Counters for status lines and tests."""
        with self._cond:
            return {
                "client_id": self.client_id,
                "buffered": len(self.buffer),
                # Bytes of inline artifact content among them (bounded by max_buffered_bytes).
                "buffered_bytes": self.buffered_bytes,
                "unacked_batches": len(self._ledger.unacked),
                "unacked_events": self._ledger.unacked_events,
                "acked_seq": self._ledger.acked_seq,
                "sent_seq": self._ledger.seq,
                "dropped": self._dropped,
                # Logged by other threads after close() or exit had sent its last batch: not delivered.
                "late": self._late,
                "blocked_s": self._blocked_s,
                "rejected": self._ledger.rejected,
                "connected": self._transport is not None,
                "spooled": self._spill.records,
                # Taken for the spool file by a write under way (a slow spool disk): in none of the
                # counts above until it ends; pending() counts them.
                "spilling": self._spilling,
            }

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def start_failure(self) -> str | None:
        """Why starting a daemon failed the last time this sender tried (its folder refused, it
        exited at once), or None."""
        return self._spawn_failure

    @property
    def refusal(self) -> str | None:
        """What the daemon said when it refused this sender's last attempt to connect (its protocol
        version, its connection limit), or None; a request that times out quotes it."""
        return self._refusal

    def close(self, timeout: float | None = None, *, exiting: bool = False) -> None:
        """Flush (waiting at most ``timeout``, then spooling what is left), then stop the thread. Idempotent.

        The thread stops at a mark, not at an empty buffer, which another thread that keeps
        logging (a system-metrics monitor) never leaves: everything appended before close()
        began is delivered by the flush (or spooled when its wait runs out); what other threads
        appended during that flush is sent in one final drain; what they append after it stays
        unsent and is counted as late (``stats()["late"]``), and one line says how many (at exit,
        ``exiting``: ``close_all_clients``, once for every sender).
        """
        if self._closed:
            return
        self.will.clear()  # told with the final drain; see Will.clear
        try:
            if self._used or self.buffer or not self._ledger.settled():
                # The last word on this sender's refused items: printed here, once.
                self.flush_or_warn(
                    self.config.exit_timeout if timeout is None else timeout, take_failures=True, final=True,
                    patient=timeout is None and not exiting,
                )
        finally:
            self._closed = True
            with self._cond:
                if self._thread is not None and (self.buffer or not self._ledger.settled()):
                    # The final drain ends with a flush barrier: the daemon writes it at once
                    # rather than within its batching delay (50 ms, a monitor's 50 late points).
                    self.buffer.append((BARRIER, self._new_request(lambda request_id: Flush(request_id=request_id))))
                # The mark, set before _stopping, which the thread reads without the lock.
                self._drain_left = len(self.buffer)
                self._stopping = True
                self._cond.notify_all()  # logging calls waiting for room return (see _on_full)
            self._poke()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(self.STOP_TIMEOUT)
                if thread.is_alive() and not self._spill_requested:
                    # Still at work for a daemon that stopped answering after the flush: the rest
                    # goes to the spool too. (A thread that has not answered a spill request yet
                    # will not answer this one sooner.)
                    reason, kept = self._still_at_work_reason()
                    self._give_up_on_daemon(reason, final=True, store_refusing=kept)
                elif not thread.is_alive():
                    # What the final drain spooled after the give-up's line (other threads logged
                    # it meanwhile): counted in a line of its own, not only in the spool file.
                    self._spill.announce_more()
            if self._dropped:
                # The on-full line came at the first drop, before anyone knew how many would follow;
                # a process that never calls flush() learnt the total nowhere but `trackd daemon status`.
                warn(f"{events(self._dropped, 'were dropped')} in all because the buffer was full" + (
                    " (TRACKD_ON_FULL=drop)." if self.config.on_full == "drop" else
                    # Under block only a given-up daemon beside a spool that cannot be written drops.
                    " and neither the daemon nor the spool file took them (TRACKD_ON_FULL=block)."
                ))
            self.media.warn_snapshots_failed()  # the first was said; with a disk that stays full, how many in all
            if not exiting:
                warn_late(self.take_late(), "close()")
            # Only the sender thread uses the socket and reads the wake pipe: close them here
            # only once that thread is gone (a Client made per call must not leak two fds each).
            if thread is None or not thread.is_alive():
                # Taken under the lock: two closes at once (atexit and a thread still closing it)
                # each closed the same descriptors, the second perhaps one reused meanwhile. The
                # socket is closed before the sender forgets it: a worker forked in between (a
                # Pool's thread) found none to close in its at-fork hook and kept the parent's
                # connection open, so the daemon saw the parent connected after it was gone. A
                # child forked inside the close itself holds a copy all the same: Transport.close
                # shuts the connection down first, which ends it for every copy.
                with self._cond:
                    if self._transport is not None:
                        self._transport.close()
                        self._transport = None
                    wake_r, wake_w = self._wake_r, self._wake_w
                    self._wake_r = self._wake_w = -1  # a late _poke() writes to no descriptor
                for fd in (wake_r, wake_w):
                    if fd >= 0:
                        os.close(fd)
                _LIVE_SENDERS.discard(self)  # only now: a child forked while closing closes its copies
            self._remove_written_folders()
            self.media.remove_if_empty()

    # -- internals shared by both sides ------------------------------------------------------------

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self.client_id = random_id()
        self.buffer = collections.deque()
        self.buffered_bytes = 0
        # The first append wakes the thread (and starts it in a forked child); after that, wake
        # early at MAX_BEFORE_SEND.
        self.wake_at = 0
        # Reentrant: the SIGTERM handler may flush while the interrupted main thread holds it.
        self._cond = threading.Condition(threading.RLock())
        # Held while a forked child's first log to an inherited run sends its creation again:
        # see claim_inherited_creation. Reentrant for the same reason as _cond.
        self._creation_lock = threading.RLock()
        self._thread = None
        self._used = False
        self._connect_ahead_pending = False
        self._stopping = False
        # Set by close(): how many records at the front of the buffer the stopping thread still
        # sends (the final drain); records behind them are late (see close and take_late).
        self._drain_left = None
        self._late = 0
        self._late_reported = 0
        # A flush gave the daemon up: the thread spools everything and clears this.
        self._spill_requested = False
        # Taken for the spool file by a write under way (a forked child's parent's thread's).
        self._spilling = 0
        self._spill_left = None
        # The sender closed with events neither a daemon nor the spool took, and said so.
        self._lost_reported = False
        # Why the first flush of this outage gave the daemon up, for the line that counts what is lost.
        self._gave_up_reason = None
        # Attempts to connect that found no daemon (nor started one): see _no_daemon_since.
        self._failed_connects = 0
        # Events spooled by give-ups since the last line said so (see _give_up_on_daemon).
        self._gave_up_announced = False
        self._unannounced = 0
        # The spool's records before a give-up's spill that exit left for the close to count (see _give_up_on_daemon).
        self._unsaid_since = None
        # The spool's records once what a line said was still being written is in it (see _give_up_on_daemon).
        self._moving_said_until = 0
        self._read_as_is_said = False
        self._transport = None
        self._protocol = None
        self._ledger = Ledger()
        self._spill = Spill(self.config, self.client_id, self.store_root, self.artifact_root)
        self.will = Will(self.config.spool_dir, self.client_id, on_add=self._poke)  # a forked child owns none of its parent's runs
        self._dropped = 0
        self._dropped_reported = 0
        self._warned_full = False
        self._warned_bytes = False
        self._blocked_s = 0.0
        self._warned_unavailable = False
        self._bounded_flushes = 0  # a forked child waits in none of its parent's
        self._next_spawn = 0.0
        self._daemon_starting = False  # forked during its parent's start: that start is not this child's
        self._start_unanswered = self._handshake_unanswered = False
        self._spawn_failure = None
        self._refusal = None
        self._store_outage = None
        # Folders of large figures to remove once their barrier is answered (remove_once_written);
        # a forked child removes none of its parent's (see _after_fork_in_child).
        self.media = MediaFolders(self.config.spool_dir, self.client_id, self.config.socket_path)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # How the thread's waits on the socket are cut short, and where any wait that emptied
        # the wake pipe notes that the loop has work (see SenderThread._cycle).
        self._interrupt = Interrupt(self._wake_r, self._should_stop_waiting)

    def _close_copies_in_child(self) -> None:
        # Our copies of the parent's spool files, socket (its connection stays) and wake pipe;
        # closing, too. Before any sender of the child makes its wake pipe (see _spool_fds).
        self._spill.abandon()
        self.media.abandon()
        if self._transport is not None:
            self._transport.close_copy()  # close() would end the parent's connection too
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._transport, self._wake_r, self._wake_w = None, -1, -1

    def _after_fork_in_child(self) -> None:
        # Every sender's copies are closed (_close_copies_in_child).
        if self._closed:
            # Forked as the parent closed it: nothing to send. But its lock may have been held by
            # the parent's closing or sender thread at the fork (held for ever here: the child's
            # exit, which takes the late count of every sender still closing, waited for ever),
            # and the records other threads of the parent logged after the close's mark are not
            # the child's late events (its exit said "N events were not delivered" of them).
            self._cond = threading.Condition(threading.RLock())
            self._creation_lock = threading.RLock()
            self.buffer = collections.deque()
            self.buffered_bytes = 0
            self._drain_left = 0
            self._late = self._late_reported = 0
            self._spilling = 0  # its parent's thread's spill: not the child's to count
            self._spill_left = None
            return
        self.inherited_creations = {**self.inherited_creations, **self.creations}
        self.creations = {}
        self._reset()
        # Then the Clients that share this sender forget what the child must create again.
        for user in list(self.users):
            user._after_fork_in_child()
        # A multiprocessing child delivers at its exit through _lifecycle.prepare_multiprocessing_child.

    def _append_barrier(self) -> Request:
        """A flush barrier behind every record appended so far, sent now: done once they are written."""
        req = self._new_request(lambda request_id: Flush(request_id=request_id))
        self.buffer.append((BARRIER, req))
        self._ensure_started()
        self._poke()
        return req

    def remove_once_written(self, folder: str) -> None:
        """Remove ``folder`` (from ``media.new_folder``) once everything appended so far is written,
        without waiting for it.

        For a temporary file an artifact record gave the daemon to copy (``log_figure`` and
        ``log_image`` of a file over MAX_INLINE_ARTIFACT_SIZE): the call used to wait for the copy,
        up to TRACKD_CONNECT_TIMEOUT with no daemon, before removing it. It goes at a later call
        of this, or at close, once the barrier behind it is answered; if the barrier fails (the
        record went to the spool), the next call's barrier stands for it, and at exit the spool's
        deliverer removes it (see _media_folders).
        """
        req = self._append_barrier()
        with self._cond:
            self.media.wait_for(folder, req)
        self._remove_written_folders()

    def _remove_written_folders(self) -> None:
        with self._cond:
            written = self.media.take_written()
        self.media.remove(written)

    def _new_request(self, build: Callable[[int], Event]) -> Request:
        with self._cond:
            return self._ledger.new_request(build)

    def _ensure_started(self) -> None:
        if not self._used:
            self._start()

    def _start(self, *, ahead: bool = False) -> None:
        """Start the thread if it is not running; unless ``ahead`` (the sender is being made, with
        nothing to send yet), note that it has something to deliver."""
        with self._cond:
            if self._closed:
                raise RuntimeError("Cannot log through a trackd client after close().")
            if not ahead and not self._used:
                self._used = True
                self.wake_at = self._early_wake()
            if self._thread is not None:
                return
            self._connect_ahead_pending = ahead
            self._thread = threading.Thread(target=self._run, name="trackd-sender", daemon=True)
            start_without_signals(self._thread)  # the main thread's to handle (trackd/_signals.py)

    def _wait(
        self, req: Request, timeout: float | None, stop_waiting: Callable[[], bool] | None = None, *, patient: bool = False,
        start: float | None = None,
    ) -> Event:
        """The reply to ``req``; FlushTimeout after ``timeout``, counted from ``start`` (now by
        default), or from the daemon's last reply if it came later (``patient``: see flush)."""
        start = time.monotonic() if start is None else start
        with self._cond:
            while not req.done:
                remaining = None if timeout is None else self._counted_from(start, patient) + timeout - time.monotonic()
                if (
                    (remaining is not None and remaining <= 0) or (stop_waiting is not None and stop_waiting())
                    or exit_hurried()  # a second SIGTERM: the flush gives the daemon up (see _bounded_flush)
                ):
                    # A daemon that refused this client, or holds its events for a store that
                    # refuses writes, answered: what it said is why (it "did not answer within").
                    said = self._refused_words() or self._store_refusing_words()
                    answered = "answered nothing for" if patient else "did not answer within"
                    raise FlushTimeout(
                        (f"{said[:1].upper()}{said[1:]}; after {timeout:g} s " if said is not None else
                         f"The trackd daemon {answered} {timeout:g} s; ")
                        + f"{events(self._pending_locked(), 'are still on the way')} to the store."
                    )
                wait_keeping_lock(self._cond, 0.05 if remaining is None else min(remaining, 0.05))
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _report(self) -> FlushReport:
        with self._cond:
            return FlushReport(acked_batches=self._ledger.acked_seq, dropped=self._dropped, pending=self._pending_locked())



# Every sender not closed, for the fork hook below.
_LIVE_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _senders_close_copies() -> None:
    """In a forked child: every open sender closes its copies of its parent's descriptors."""
    for sender in list(_LIVE_SENDERS):
        sender._close_copies_in_child()


def _senders_after_fork() -> None:
    """In a forked child, once every copy is closed: every open sender drops its parent's buffer
    and thread, and makes its own wake pipe."""
    for sender in list(_LIVE_SENDERS):
        sender._after_fork_in_child()


# Not a hook of its own: a copy closed by its path in between, or a wake pipe made before another
# sender closed its copies, closed a descriptor the child had made (see _spool_fds).
on_fork_in_child(_senders_close_copies, _senders_after_fork)
