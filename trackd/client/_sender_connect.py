"""The sender thread's connecting: a handshake with the daemon (starting one when none answers),
the first one as the sender is made, and probes for a daemon another process started.

``SenderThread`` (``_sender_thread.py``) is the rest of the thread's half: its loop, sending
batches and the spool file again after a reconnect, reading the daemon's replies. Only the sender
thread runs the methods here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import DaemonUnavailable, RemoteProtocolError
from ..protocol import ARTIFACT, Connection, ErrorCode, Hello, Welcome
from ._launcher import MAX_ENDED_STARTS, DaemonCannotStart, DaemonStoppedStarting, Started, gone_before_handshake, start_daemon
from ._outbox import events_in, warn
from ._sender_state import SenderState
from ._transport import DaemonRefused, HandshakeUnanswered, Transport, gave_up_error, handshake, make_hello


class SenderConnect(SenderState):
    """How a Sender's thread connects to the daemon."""

    def _nothing_to_deliver(self) -> bool:
        """Nothing buffered, waiting for an answer, queued, spooled or left to report."""
        with self._cond:
            return (
                not self.buffer and self._ledger.settled() and not self._ledger.outgoing
                and not self._spill.records and self._dropped == self._dropped_reported
                and not self.will.untold()  # a run resumed with nothing logged yet: its owner is news
            )

    def _connect_ahead(self) -> None:
        """The thread's first turn, started with the sender: connect to a daemon that runs (its
        Hello sent and its Welcome read) before anything is logged, starting none.

        The first send waited for the connection, begun only once the run's creation was buffered:
        a short script that logs a few values and leaves by ``os._exit`` (no flush, no atexit) left
        no run (0 of 50 in the store). A process that only reads starts no daemon. No daemon
        listening is not an outage, and says nothing: the first event's attempt starts one, as
        before. Any other failure (a daemon stopped or refusing) counts once events wait, as any
        attempt's does.
        """
        self._connect_ahead_pending = False
        if self._stopping:
            return
        try:
            self._connect(autostart=False)
        except DaemonUnavailable as exc:
            if self._stopping or self._nothing_to_deliver() or self._nothing_listens(exc):
                return
            self._count_failed_attempt(exc)
            raise

    def _tell_will_to_a_running_daemon(self) -> bool:
        """Idle, disconnected and owning runs: connect, now and then, to a daemon that runs, never
        starting one; True once connected (the next cycle sends the runs).

        The daemon fails the runs of a process that dies only if it was told them, on a live
        connection: an idle process (a notebook, a job waiting on a barrier) whose daemon was
        restarted by someone else sent nothing, so a SIGKILL then left its runs RUNNING for ever.
        Probes back off to one every WILL_PROBE_MAX_INTERVAL: a failed connect() costs a few
        system calls. A daemon that is stopping has closed its socket, or refuses the Hello.
        """
        if self._stopping or not self.will.snapshot():
            return False
        now = time.monotonic()
        if now < self._next_will_probe:
            return False
        try:
            self._connect(autostart=False, timeout=min(self.config.connect_timeout, self.WILL_PROBE_TIMEOUT))
        except DaemonUnavailable as exc:
            self._will_probe_delay = min(max(self._will_probe_delay * 2, self.WILL_PROBE_INTERVAL), self.WILL_PROBE_MAX_INTERVAL)
            # A daemon that refuses this client for good (an older trackd's) counts every attempt.
            lasting = isinstance(exc, DaemonRefused) and exc.lasting
            self._next_will_probe = now + (self.SPAWN_INTERVAL_AFTER_EXIT if lasting else self._will_probe_delay)
            return False
        return True

    def _connect_or_count(self) -> None:
        """Connect; an attempt that finds no daemon (and, with autostart, starts none) is counted,
        so a bounded flush (exit, end_run) knows it has nothing left to wait for."""
        try:
            self._connect()
        except DaemonUnavailable as exc:
            self._count_failed_attempt(exc)
            raise

    def _count_failed_attempt(self, exc: DaemonUnavailable) -> None:
        self._spill.attempt_failed()
        if self._none_will_answer(exc):
            with self._cond:
                self._failed_connects += 1
                self._cond.notify_all()

    @staticmethod
    def _nothing_listens(exc: DaemonUnavailable) -> bool:
        return isinstance(exc.__cause__, (FileNotFoundError, ConnectionRefusedError))

    @staticmethod
    def _shutting_down(exc: DaemonUnavailable) -> bool:
        """Whether the daemon refused the handshake because it is stopping."""
        return isinstance(exc, DaemonRefused) and exc.code == ErrorCode.SHUTTING_DOWN

    def _none_will_answer(self, exc: DaemonUnavailable) -> bool:
        """Whether a failed attempt found nothing to wait for: nothing listened on the socket, a
        start failed, or a daemon refused this client for good (another protocol version: an older
        daemon still running after an upgrade made every exit wait 10 s). A daemon that is there
        but refused for now (its connection limit), did not finish
        the handshake in time (busy) or is still starting may yet answer: exit waits for it (every
        such exit once spooled at once, saying no daemon answered)."""
        if isinstance(exc, DaemonCannotStart) or self._spawn_failure is not None:
            return True
        if isinstance(exc, DaemonRefused):
            return exc.lasting
        return self._nothing_listens(exc)

    def _connect(self, *, autostart: bool = True, timeout: float | None = None) -> None:
        path = self.config.socket_path
        hello = make_hello(self.client_id, self.store_root, self.artifact_root)
        interrupt = self._interrupt
        # Given up (a stalled daemon, see _keep_waiting_given_up): one attempt waits for as long as
        # its connection stays open.
        keep_waiting = self._keep_waiting_given_up if self._spill.gave_up else None
        # The owned runs go right after the Hello, before anything is resent (see Will.ahead_news).
        self.will.connected()
        try:
            ahead = self._ahead_if_nothing_to_resend()
            transport, protocol, welcome = handshake(
                path, hello, timeout=self.config.connect_timeout if timeout is None else timeout, interrupt=interrupt,
                owned=self.will.ahead_news, ahead=ahead, keep_waiting=keep_waiting,
            )
        except DaemonUnavailable as exc:
            self._handshake_unanswered = isinstance(exc, HandshakeUnanswered)
            # A daemon that refused runs on: one started now would exit "already running" (it was,
            # every second). One shutting down is replaced by the start, which waits for its lock.
            leaving = self._shutting_down(exc)
            refused = exc if isinstance(exc, DaemonRefused) and not leaving else None
            self._refusal = refused.reason if refused is not None else None
            if leaving:
                self._daemon_leaving = True
            if refused is not None or not (autostart and self.config.autostart) or self._stopping or self._spill_requested:
                raise
            # Whether to resend is the last handshake's to say: one refused after it sent batches
            # ahead left them unread, to go again on the connection that answered.
            transport, protocol, welcome, ahead = self._start_and_shake_hands(hello, keep_waiting)
        # A spill asked for while this attempt waited and not done yet (its poke came with the
        # Welcome): done now, before the connection counts, so what its asker (a bounded flush
        # giving the daemon up, a full buffer) counts is in the spool, which goes to this daemon
        # first. Done after, it gave up the daemon that had just answered.
        try:
            self._spool_while_reconnecting()
            # The spool file is opened (and its Hello read) for the resend before the lock is
            # taken: a spool folder on a slow or hung disk (NFS) held, under it, every logging call
            # that drops (TRACKD_ON_FULL=drop) and every flush for as long as the open took.
            unreadable: OSError | RemoteProtocolError | None = None
            try:
                spooled, spooled_events = self._spill.replay(welcome.resume_seq)
            except (OSError, RemoteProtocolError) as exc:
                if self._spill.unreadable_for_now(exc):
                    # Out of descriptors or memory for a moment: the file and its counts stay, and
                    # the next attempt (after the usual backoff) reads it again. The daemon skips a
                    # batch numbered below one it received, so nothing newer may go before it.
                    raise DaemonUnavailable(f"The spool file could not be read back for now ({exc}).") from exc
                spooled, spooled_events, unreadable = 0, 0, exc
        except BaseException:
            transport.close()  # not the sender's yet: nothing else would close it
            raise
        self._refusal = None
        self._daemon_leaving = False
        self._start_unanswered = self._handshake_unanswered = False
        with self._cond:
            self._transport = transport
            self._protocol = protocol
            if welcome.resume_seq > self._ledger.acked_seq:
                # The daemon wrote batches while this client was away (a store that refused writes
                # recovered): its Welcome says so as an Ack would, and no Ack follows for them. The
                # exit line blamed the full disk, written long before, of a daemon stopped since.
                self._store_outage = None
            self._ack(welcome.resume_seq)
            if ahead is None:
                self._ledger.resend_all()  # after the spool file, within the window (see _send_spooled)
            # (Else every batch kept went ahead of this Welcome, on this connection: none is resent.)
            self._ledger.requeue_sent()  # experiment requests at once, flush barriers after the batches
            if not self._spill.unreadable:
                # (A daemon that answers while the spool file fails each resend gets nothing: a
                # close's patient wait, counted from this, reconnected for ever under a lasting EIO.)
                self._heard_at = time.monotonic()
            if unreadable is not None:
                # Removed or damaged by someone else (a cache cleaner): its events are gone, and
                # the next flush says how many. It used to fail every reconnect, so nothing logged
                # after it was delivered while flushes blamed a healthy daemon.
                self._ledger.refuse(*self._spill.lost_file(welcome.resume_seq, unreadable))
            resend, resend_events = len(self._ledger.unacked), self._ledger.unacked_events
            # Everything not acknowledged goes again, the spool first (see _send_spooled), at
            # once: the next cycle does not wait out the send interval first (60 s in a test,
            # where a flush waiting on a resent batch timed out).
            self._behind_spool = True
            self._interrupt.poked = True
        self._spill.finish_removals()  # a spool file delivered or lost: deleted without the lock
        spool_announced = self._spill.answered()
        # The once-a-second limit is for daemons that fail to start; one that answered and later
        # went away (stopped by hand within a second of the process start) is replaced at once.
        self._next_spawn = 0.0
        self._will_probe_delay = 0.0  # lost again, the next daemon is looked for at once
        self._next_will_probe = 0.0
        self._gave_up_announced = False  # a new stall is news again
        self._gave_up_reason = None
        self._unannounced = 0  # (what it spooled quietly goes to the daemon from the spool now)
        self._unsaid_since, self._moving_said_until = None, 0
        self._read_as_is_said = False  # reads read their own writes again; a new outage is said
        # Also after a spill announced without the "unreachable" line (the daemon restarted while
        # this process started its successor): the line saying the events wait for a daemon or
        # `trackd sync` was the last word on them, though this daemon got them a moment later.
        if self._warned_unavailable or spool_announced:
            # Events first, as the line that spooled them counted them ("resending 22 spooled and 3
            # unacknowledged batches" could not be matched with "15302 events ... spooled").
            resending = [events_in(spooled_events, spooled, "spooled event")] if spooled else []
            if resend:
                resending.append(f"{events_in(resend_events, resend)} not acknowledged yet")
            warn(f"reconnected to the daemon at {path}; {'resending ' + ' and '.join(resending) if resending else 'nothing to resend'}.")
            self._warned_unavailable = False
        self._spill.deliver_orphans_once()

    def _start_and_shake_hands(
        self, hello: Hello, keep_waiting: Callable[[], bool] | None
    ) -> tuple[Transport, Connection, Welcome, Callable[[Connection], bytes | None] | None]:
        """Start a daemon and shake hands with it; one that answered the start's probe and was gone
        by the handshake (`trackd daemon stop` landing in between, or killed) is started again at
        once, up to MAX_ENDED_STARTS such rounds. The rounds share one launcher bound: each daemon
        this client started that ended before it answered (in the launcher's wait, or gone by the
        handshake) counts, and at MAX_ENDED_STARTS the attempt fails as the launcher's does, saying
        how the daemons ended (stopped, killed, exited with a code). Returns the handshake's, and
        the ``ahead`` of the handshake that got the Welcome (None: what went ahead of a refusal is to be resent).

        The failed handshake was raised instead, counted as an attempt that found no daemon, and
        the next start waited the spawn interval (1 s): a short job's exit gave the daemon up at
        once and spooled all it had logged, saying "none could be started" (1 of 480 jobs when
        stops met rounds of 8 jobs). Each round then had a bound of its own: a storm of stops made
        one attempt start 6 daemons (up to 9), and its exit still said "none could be started"."""
        path = self.config.socket_path
        rounds = 0
        started: Started | None = None
        while True:
            rounds += 1
            started = self._start_daemon(started)
            self.will.connected()  # the attempt that failed may have told them
            try:
                ahead = self._ahead_if_nothing_to_resend()  # none, if the attempt that failed sent batches
                transport, protocol, welcome = handshake(
                    path, hello, timeout=self.config.connect_timeout, interrupt=self._interrupt,
                    owned=self.will.ahead_news, ahead=ahead, keep_waiting=keep_waiting,
                )
                return transport, protocol, welcome, ahead
            except DaemonUnavailable as exc:
                self._handshake_unanswered = isinstance(exc, HandshakeUnanswered)
                gone = self._nothing_listens(exc) or self._shutting_down(exc)
                if not gone or self._stopping or self._spill_requested:
                    raise
                if started.process is not None:  # this client's: it counts against the start bound
                    started, failure = gone_before_handshake(
                        path, started, shutting_down=self._shutting_down(exc), stop=self._should_stop_waiting,
                    )
                    if rounds == MAX_ENDED_STARTS or started.ended >= MAX_ENDED_STARTS:
                        self._start_failed(failure)
                        raise failure from exc
                elif rounds == MAX_ENDED_STARTS:
                    raise  # another process's daemon: this one started none
                self._next_spawn = 0.0  # it answered, then left: not a start that failed

    def _ahead_if_nothing_to_resend(self) -> Callable[[Connection], bytes | None] | None:
        """``_batches_ahead`` for a handshake with nothing to resend after it; None if there is something.

        Nothing unacknowledged, no request waiting for its answer, no spool file written, and the
        daemon not given up (whose spills would take batches sent on this connection to the spool,
        to go again on it). Then the batches logged while the Welcome is awaited follow the Hello
        at once: nothing has to go before them, and a daemon holds nothing of them yet.
        """
        with self._cond:
            resend = not self._ledger.settled() or self._spill.written or self._spill.gave_up
            self._ahead_held = False
        return None if resend else self._batches_ahead

    def _batches_ahead(self, protocol: Connection) -> bytes | None:
        """The frames of the next batches to send before the daemon's Welcome (owned runs it was not
        told first, as ``_send_buffer`` sends them), kept as unacknowledged; None if none may go.

        The kernel holds them once in the socket, so a process killed while the daemon is stopped
        or busy has them written when it reads on (it lost them with its memory, its run's
        creation included). They are in flight as any batch sent: a flush waits for their ack,
        and a failed attempt leaves them to be resent, or spooled, by their numbers, which the
        daemon skips if it reads them from this connection too. A flush barrier among them is not
        sent: it waits in flight, and goes after the Welcome (``_send_spooled``), behind them.

        A record that copies a file (an artifact by path, its snapshot in the media folder) and
        what follows it wait for the Welcome: a media folder is removed as an orphan once its
        process is dead and the daemon lists no session of it (``_media_folders._why_kept``), and
        a daemon has none until it reads the Hello, which it may not have yet when asked.
        """
        with self._cond:
            if self._ahead_held or not self.buffer or self._drain_left == 0 or self._spill.written or self._spill.gave_up:
                return None
            if not self._window_has_room():
                return None
            records, barrier = self._next_chunk()
            cut = next((i for i, record in enumerate(records) if record[0] == ARTIFACT and record[4] is not None), None)
            if cut is not None:
                self._put_back(records[cut:], barrier)
                records, barrier, self._ahead_held = records[:cut], None, True
                if not records:
                    return None
            # Read after the chunk is popped, as in _send_buffer: a run added before its creation
            # was appended is in it.
            current = self.will.snapshot()
            if barrier is not None:
                self._ledger.expect_reply(barrier)
            frames = self._encode_batches(records, protocol)
            self._rearm_wake(len(records) + (barrier is not None))
            self._cond.notify_all()  # room in the buffer for callers waiting under "block"
        news = self.will.ahead_news(current)
        return frames if news is None else protocol.send(news) + frames

    def _should_stop_waiting(self) -> bool:
        """Whether a wait on the socket is to be cut short: a flush gave the daemon up, or the
        client is closing before a handshake completed (a send to a daemon that answers is
        finished instead, so a closing client does not cut a healthy connection). A spill asked
        for while the thread reconnects to a daemon given up is done first, and cuts nothing."""
        self._spool_while_reconnecting()
        return self._spill_requested or (self._stopping and self._transport is None)

    def _spool_while_reconnecting(self) -> None:
        """Given up, not connected: do a spill a logging call (its buffer full, see _on_full) or a
        bounded flush asked for here, in the attempt's wait (the handshake, a start, the backoff),
        and let the attempt go on.

        The spill cut the attempt short: a process filling its buffer faster than a stopped
        daemon's handshake times out left a dead connection in its listen queue at every attempt
        (31 from 4 processes logging 20k points/s through a 30 s SIGSTOP, each served by the daemon
        when it resumed), and after the resume an attempt got through only if the daemon answered it
        before the buffer filled again: 3 of those 4 went on spooling all they logged, beside an
        idle daemon, until their loops ended.
        """
        if self._spill_requested and self._transport is None and self._spill.gave_up and not self._stopping:
            self._abandon(gave_up_error(self.config.socket_path))

    def _keep_waiting_given_up(self) -> bool:
        """A handshake after a give-up has waited connect_timeout for its Welcome: spool what waits,
        as a failed attempt does, and wait on (True) on the same connection, unless closing.

        The daemon was given up for its silence (stopped, stuck): it answers this connection when it
        resumes, and a new one would only add a connection it must serve then (see handshake). A
        daemon that dies, or is killed, closes it: the attempt fails and the next one starts a daemon.
        """
        if self._stopping or not self._spill.gave_up:
            return False
        self._spool_pending(gave_up_error(self.config.socket_path))
        return True

    def _start_daemon(self, earlier: Started | None = None) -> Started:
        """Start a daemon (``earlier``: this attempt's last start, see ``_start_and_shake_hands``);
        what the launcher started, once one answers."""
        now = time.monotonic()
        if now < self._next_spawn:
            raise DaemonUnavailable(
                f"No trackd daemon answers at {self.config.socket_path} yet."
                + (f" The last start failed: {self._spawn_failure}" if self._spawn_failure else "")
            )
        self._next_spawn = now + self.SPAWN_INTERVAL
        # A start under way is not an outage: a logging call waiting for room says nothing of it
        # (see OnFullPolicy._wait_for_room). When many processes found no daemon at once, on a
        # loaded machine, the start took over 2 s and those that filled their buffer meanwhile
        # said "no daemon answers ...; trackd keeps trying to reconnect" of a healthy start.
        self._daemon_starting = self._start_unanswered = True
        try:
            started = start_daemon(
                self.config.socket_path, timeout=self.config.connect_timeout, stop=self._should_stop_waiting, earlier=earlier,
            )
            with self._cond:
                # It answers: a wait's silence counts from now, the handshake's time, not the
                # start's (set before the flag is cleared: a waiter between the two saw 2 s of
                # silence and no start under way).
                self._heard_at = time.monotonic()
        except DaemonCannotStart as exc:
            self._start_failed(exc)
            raise
        finally:
            self._daemon_starting = False
        self._spawn_failure = None
        return started

    def _start_failed(self, exc: DaemonCannotStart) -> None:
        """A start failed in a way that would repeat: its flags, store or folder (the same again a
        second later: it was started every second, each time writing its usage to the log), or
        every daemon it started ended before it answered. Stopped ones (`trackd daemon stop`) ran,
        and the next may not be: started again after the usual interval. With the 30 s of a bad
        flag, a job whose first three daemons were stopped at its handshake started none for 30 s
        after the stops ended, and its exit spooled what the code before c7ece5e delivered."""
        stopped = isinstance(exc, DaemonStoppedStarting)
        self._next_spawn = time.monotonic() + (self.SPAWN_INTERVAL if stopped else self.SPAWN_INTERVAL_AFTER_EXIT)
        self._spawn_failure = str(exc)
        self._spawn_stopped = stopped
        self._start_unanswered = False  # failed: no daemon is coming (the failure is said instead)

    def _ack(self, seq: int) -> None:
        """Settle batches up to ``seq``, spooled ones included (called with the lock held)."""
        self._ledger.ack(seq)
        self._spill.acked(seq)
