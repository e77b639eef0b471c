"""The sender thread's half of the Sender: connecting (starting a daemon when none answers),
sending batches and the spool file again after a reconnect, and reading the daemon's replies.

``Sender`` (``_sender.py``) is the caller's half and the lifecycle: the buffer a logging call
appends to, flush, close, fork. ``SenderState`` (``_sender_state.py``) holds what both share and
the spill when no daemon answers. Only the sender thread runs the methods here.
"""

from __future__ import annotations

import time

from ..errors import DaemonUnavailable, LocalProtocolError, RemoteProtocolError
from ..protocol import (
    NEED_DATA, Ack, BadBatch, ConnectionClosed, Dropped, ErrorCode, ErrorReply, Event, FlushDone, Record, store_unavailable_reason,
)
from ._launcher import DaemonCannotStart, start_daemon
from ._lifecycle import interpreter_exiting
from ._outbox import Request, events, log_exception, warn
from ._sender_state import SenderState
from ._transport import DaemonRefused, HandshakeUnanswered, empty_pipe, gave_up_error, handshake, make_hello, readable


class SenderThread(SenderState):
    """What a Sender's thread does: connect, send, read the daemon's replies (its state and the
    spill are in ``SenderState``)."""

    # -- the sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                self._spool_while_reconnecting()
                if self._spill_requested:
                    raise gave_up_error(self.config.socket_path)
                if self._transport is None:
                    if self._nothing_to_deliver():
                        # A daemon that went away (`trackd daemon stop`, an upgrade) is started
                        # again only once there is something to send: an idle process restarted
                        # it at once, so it could not be stopped while any client lived. One that
                        # another process started is told this process's runs, unasked.
                        if not self._tell_will_to_a_running_daemon():
                            self._spill.idle()
                            self._sleep(self.config.flush_interval)
                    else:
                        self._connect_or_count()
                        backoff = 0.05
                if self._transport is not None:
                    self._cycle()
            except DaemonUnavailable as exc:
                try:
                    self._read_last_replies()
                    # Giving up is not news: the flush that asked for it says what it spooled.
                    self._disconnected(None if self._spill_requested else exc)
                    if self._spill_requested:
                        self._abandon(exc)
                    elif self._stopping or self._spill.should_spool(len(self.buffer), self.buffered_bytes):
                        self._spool_pending(exc)
                    if self._stopping and self._drain_left and self._spill.unwritable is None:
                        # A spill takes what the buffer held when it began: what was logged during
                        # a slow one, before close()'s mark, goes too. The thread returned with it
                        # in the buffer, neither spooled nor sent, and pending() never reached 0.
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
                if self._drain_left:
                    # The records before close()'s mark go to the spool, as when an attempt to
                    # connect fails: other threads logged them after a give-up's spill (the close
                    # gave a stopped daemon up), and they were left in the buffer, neither sent,
                    # spooled nor counted.
                    self._spool_pending(gave_up_error(self.config.socket_path))
                return
            # Stopping ends at the mark close() set, not at an empty buffer: a thread that goes on
            # logging (a 1 kHz system-metrics monitor) kept the buffer from ever emptying, so one
            # close in three waited out STOP_TIMEOUT and spooled, blaming a healthy daemon.
            if self._stopping and self._drain_left == 0 and self._ledger.settled():
                return

    def _nothing_to_deliver(self) -> bool:
        """Nothing buffered, waiting for an answer, queued, spooled or left to report."""
        with self._cond:
            return (
                not self.buffer and self._ledger.settled() and not self._ledger.outgoing
                and not self._spill.records and self._dropped == self._dropped_reported
                and not self.will.untold()  # a run resumed with nothing logged yet: its owner is news
            )

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

    def _cycle(self) -> None:
        transport = self._transport
        assert transport is not None
        wait = self.config.flush_interval
        if self._interrupt.poked:
            # Another wait (the handshake, a send, the backoff) emptied the pipe of a poke that
            # asked for this loop (a flush): act on it now. (The first flush of a process waited
            # a whole send interval, 50 ms, for it.)
            self._interrupt.poked = False
            wait = 0.0
        ready = readable([self._wake_r, transport.fileno()], wait)
        if self._wake_r in ready:
            empty_pipe(self._wake_r)
        if self._spill_requested:
            return  # _run gives the daemon up
        self._read_replies()
        # Experiment requests first, also while the spool file is resent: they wait for no batch
        # (the flush barriers, which do, travel in the buffer; see Ledger.requeue_sent).
        self._send_requests()
        if self._behind_spool:
            self._send_spooled()
        if not self._behind_spool:
            self._send_buffer()
        if self._dropped != self._dropped_reported:
            # Dropped events are counted where the daemon's status shows them too.
            self._dropped_reported = self._dropped
            self._send_event(Dropped(total=self._dropped))

    def _sleep(self, seconds: float) -> None:
        """Back off, waking early when poked; the poke is used up here (the loop's next step,
        connecting again, is what it asks for), or every later backoff would return at once and
        the thread would spin while no daemon answers."""
        if readable([self._wake_r], seconds):
            empty_pipe(self._wake_r)
            # What poked (a flush) still wants the loop's attention once connected.
            self._interrupt.poked = True

    def _connect_or_count(self) -> None:
        """Connect; an attempt that finds no daemon (and, with autostart, starts none) is counted,
        so a bounded flush (exit, end_run) knows it has nothing left to wait for."""
        try:
            self._connect()
        except DaemonUnavailable as exc:
            self._spill.attempt_failed()
            if self._none_will_answer(exc):
                with self._cond:
                    self._failed_connects += 1
                    self._cond.notify_all()
            raise

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
        return isinstance(exc.__cause__, (FileNotFoundError, ConnectionRefusedError))

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
            transport, protocol, welcome = handshake(
                path, hello, timeout=self.config.connect_timeout if timeout is None else timeout, interrupt=interrupt,
                owned=self.will.ahead_news, keep_waiting=keep_waiting,
            )
        except DaemonUnavailable as exc:
            self._handshake_unanswered = isinstance(exc, HandshakeUnanswered)
            # A daemon that refused runs on: one started now would exit "already running" (it was,
            # every second). One shutting down is replaced by the start, which waits for its lock.
            refused = exc if isinstance(exc, DaemonRefused) and exc.code != ErrorCode.SHUTTING_DOWN else None
            self._refusal = refused.reason if refused is not None else None
            if isinstance(exc, DaemonRefused) and exc.code == ErrorCode.SHUTTING_DOWN:
                self._daemon_leaving = True
            if refused is not None or not (autostart and self.config.autostart) or self._stopping or self._spill_requested:
                raise
            self._start_daemon()
            self.will.connected()  # the attempt that failed may have told them
            try:
                transport, protocol, welcome = handshake(
                    path, hello, timeout=self.config.connect_timeout, interrupt=interrupt, owned=self.will.ahead_news,
                    keep_waiting=keep_waiting,
                )
            except DaemonUnavailable as exc:
                self._handshake_unanswered = isinstance(exc, HandshakeUnanswered)
                raise
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
                spooled = self._spill.replay(welcome.resume_seq)
            except (OSError, RemoteProtocolError) as exc:
                if self._spill.unreadable_for_now(exc):
                    # Out of descriptors or memory for a moment: the file and its counts stay, and
                    # the next attempt (after the usual backoff) reads it again. The daemon skips a
                    # batch numbered below one it received, so nothing newer may go before it.
                    raise DaemonUnavailable(f"The spool file could not be read back for now ({exc}).") from exc
                spooled, unreadable = 0, exc
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
            self._ledger.resend_all()  # after the spool file, within the window (see _send_spooled)
            self._ledger.requeue_sent()  # experiment requests at once, flush barriers after the batches
            self._heard_at = time.monotonic()
            if unreadable is not None:
                # Removed or damaged by someone else (a cache cleaner): its events are gone, and
                # the next flush says how many. It used to fail every reconnect, so nothing logged
                # after it was delivered while flushes blamed a healthy daemon.
                self._ledger.refuse(*self._spill.lost_file(welcome.resume_seq, unreadable))
            resend = len(self._ledger.unacked)
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
        # Also after a spill announced without the "unreachable" line (the daemon restarted while
        # this process started its successor): the line saying the events wait for a daemon or
        # `trackd sync` was the last word on them, though this daemon got them a moment later.
        if self._warned_unavailable or spool_announced:
            warn(
                f"reconnected to the daemon at {path}; resending {spooled} spooled and "
                f"{resend} unacknowledged batches."
            )
            self._warned_unavailable = False
        self._spill.deliver_orphans_once()

    def _send_spooled(self) -> None:
        """After a reconnect: send the spool file again, then what waited behind it, the
        unacknowledged batches and the flush barriers sent to the lost daemon, all within the window.

        In that order because the daemon skips a batch numbered below one it received. Read a frame
        at a time as acks make room, a spool of gigabytes costs one frame, and acks and give-ups
        are heard meanwhile (the whole file used to be read, and sent, in one go while connecting).
        The unacknowledged batches follow in the same window, a batch at a time as acks make room:
        they went all at once after the spool, a second window's worth beside its last frames (or
        a whole buffer's, cut into batches by a spill the spool file refused). The barriers go once
        they are all sent: a flush barrier must follow them, and acks keep making room, so they wait
        for acks, never for ever. (Experiment requests do not wait: ``_cycle`` sends them.)
        """
        transport = self._transport
        assert transport is not None
        while True:
            if not self._window_has_room():
                return  # its acks wake the next cycle
            try:
                frame = self._spill.next_spooled()
            except (OSError, RemoteProtocolError) as exc:
                truncated = self._spill.truncate_unreadable()  # without the lock: the disk may be slow
                with self._cond:
                    self._ledger.refuse(*self._spill.cut_unreadable(exc, self._ledger.acked_seq, truncated))
                frame = None
            self._spill.finish_removals()
            if lost := self._spill.take_lost():
                with self._cond:  # batches that do not decode: lost, each said by the next flush
                    for records, reason in lost:
                        self._ledger.refuse(records, reason)
            if frame is None:
                break
            transport.send(frame)
        while True:
            with self._cond:
                if not self._window_has_room():
                    return
                frame = self._ledger.next_unsent()
                if frame is None:
                    self._behind_spool = False
                    barriers = self._ledger.barriers()
                    break
            transport.send(frame)
        for req in barriers:
            self._send_request(req)

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

    def _start_daemon(self) -> None:
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
            start_daemon(self.config.socket_path, timeout=self.config.connect_timeout, stop=self._should_stop_waiting)
            with self._cond:
                # It answers: a wait's silence counts from now, the handshake's time, not the
                # start's (set before the flag is cleared: a waiter between the two saw 2 s of
                # silence and no start under way).
                self._heard_at = time.monotonic()
        except DaemonCannotStart as exc:
            # Its flags, store or folder made it fail: the same again a second later (it was
            # started every second, each time writing its usage to the log).
            self._next_spawn = now + self.SPAWN_INTERVAL_AFTER_EXIT
            self._spawn_failure = str(exc)
            self._start_unanswered = False  # failed: no daemon is coming (the failure is said instead)
            raise
        finally:
            self._daemon_starting = False
        self._spawn_failure = None

    def _disconnected(self, exc: BaseException | None) -> None:
        # A connection that broke is retried before anything is said: a daemon stopped by hand
        # (an upgrade) is replaced by autostart within milliseconds and nothing is lost, and a
        # busy process printed "unreachable: Connection reset by peer ... Holding N events" and
        # "reconnected" for it. Only an attempt to connect that fails is an outage worth a line.
        broke = self._transport is not None
        if self._transport is not None:
            self._transport.close()
            self._spill.broke()
        with self._cond:
            self._transport = None
            self._protocol = None
            self._behind_spool = False
            self._spill.stop_replay()
            self._spill.lost()
            # Requests not yet sent stay queued; sent ones are resent after reconnecting.
            self._cond.notify_all()
        if exc is not None and not broke and self._unreachable_is_news():
            self._warned_unavailable = True
            held = self.pending()
            warn(f"{exc} Holding {events(held)} and retrying." if held else f"{exc} Retrying.")

    def _unreachable_is_news(self) -> bool:
        """Whether a failed attempt to connect earns the line that says the events are held and
        retried: once an outage, and only by a process that goes on retrying.

        Not before no daemon has answered for UNREACHABLE_GRACE: a process that exits, or gives
        the daemon up in a bounded flush (end_run, close), within it says in one line what became
        of its events (spooled, with counts). With TRACKD_AUTOSTART=0 and no daemon, a process
        that logged and exited printed "Holding 1003 events and retrying." and, a millisecond
        later, that they were spooled: nothing was retried, and two lines said one thing. Nor
        once a line said they went to the spool (a spill, a give-up), nor when nothing waits for
        a daemon (a daemon gone while nothing waits on it costs nothing: said once it would).
        """
        if self._warned_unavailable or self._stopping or self._bounded_flushes or interpreter_exiting():
            return False
        if self._spill.spooling or self._spill.gave_up or self._spill.unavailable_for() < self.UNREACHABLE_GRACE:
            return False
        return not self._nothing_to_deliver()

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

    def _read_last_replies(self) -> None:
        """Settle what the daemon said before the connection broke (its socket keeps it readable).

        A send the daemon's close cut short (EPIPE) used to leave its last replies unread: the
        bad_frame naming a batch it cannot decode among them, which then went again on every
        connection, or to the spool, which could not read it back and lost what followed it.
        """
        if self._transport is None:
            return
        try:
            self._read_replies()
        except (DaemonUnavailable, RemoteProtocolError):
            pass  # the end of the stream, or bytes past the last whole reply: the break itself

    def _on_event(self, event: Event) -> None:
        with self._cond:
            self._heard_at = time.monotonic()  # the daemon is at work for this client (see Sender._wait)
            if isinstance(event, ErrorReply) and event.code == ErrorCode.SHUTTING_DOWN:
                self._daemon_leaving = True  # for the on-full line: a restart, not a slow daemon
            if isinstance(event, ErrorReply) and event.code == ErrorCode.STORE_UNAVAILABLE and not event.request_id:
                self._store_outage = store_unavailable_reason(event.message)  # for the line of a flush that gives up
            elif isinstance(event, (Ack, FlushDone)):
                self._store_outage = None  # something was written
            if isinstance(event, Ack):
                self._ack(event.seq)
            elif isinstance(event, BadBatch):
                self._ledger.drop_refused(event, spooled=lambda seq: self._spill.refuse(seq, self._ledger.acked_seq))
            else:
                self._ledger.settle(event)
            self._cond.notify_all()
        # The spool file an ack (or a refusal) delivered whole is deleted without the lock: its
        # unlink on a slow disk held stats(), dropping logging calls and exit's bounded waits.
        self._spill.finish_removals()

    def _ack(self, seq: int) -> None:
        """Settle batches up to ``seq``, spooled ones included (called with the lock held)."""
        self._ledger.ack(seq)
        self._spill.acked(seq)

    def _send_requests(self) -> None:
        while self._ledger.outgoing:
            with self._cond:
                req = self._ledger.next_outgoing()
            self._send_request(req)

    def _send_request(self, req: Request) -> None:
        """Send ``req`` (in flight already); one that cannot be built or encoded fails alone.

        Its caller gets the LocalProtocolError, and the thread goes on: it raised out of the
        cycle, which dropped the connection, reconnected and sent it first again, for ever, while
        every later request and batch waited behind it (no public call makes one today: the call
        sites check what they pass; this is the guard for a check they lack).
        """
        assert self._transport is not None and self._protocol is not None
        try:
            frame = self._protocol.send(req.build(req.request_id))
        except LocalProtocolError as exc:
            with self._cond:
                self._ledger.fail(req, exc)
                self._cond.notify_all()
            return
        self._transport.send(frame)

    def _send_event(self, event: Event) -> None:
        assert self._transport is not None and self._protocol is not None
        self._transport.send(self._protocol.send(event))

    def _send_buffer(self) -> None:
        ledger, config = self._ledger, self.config
        # The owned runs the daemon holds never miss a run it has written, nor lose one before its
        # end arrives. start_run adds its run before it queues the creation, so each chunk's runs
        # are in the set read with it, under the same lock, and are told before the chunk
        # (Will.ahead_news). end_run queues the end before it removes the run, so the set read
        # before the buffer is told only once everything buffered then is sent, with the runs
        # told ahead meanwhile (Will.news): it drops what was removed before it, never later.
        with self._cond:
            owned, ahead, taken = self.will.snapshot(), len(self.buffer), 0
        kept = dict.fromkeys(owned)
        # The window: what waits for its ack is bounded in events and in bytes (see _config),
        # the spool file's last batches sent again included.
        while self.buffer and self._drain_left != 0 and self._window_has_room():
            # Popped, encoded and kept as unacknowledged under one lock, so pending() never finds
            # a chunk in neither place (logging calls do not take it); the socket write is outside.
            with self._cond:
                records, barrier = self._next_chunk()
                # Read after the chunk is popped: start_run adds its run before it appends the
                # creation, and neither takes this lock, so a set read first could miss the run
                # of a creation appended in between, and the creation would go out untold.
                current = self.will.snapshot()
                taken += len(records) + (barrier is not None)
                if barrier is not None:
                    # In flight before the batch ahead of it is sent: if that send breaks, a reconnect
                    # resends the batch and then the barrier, which would otherwise be lost.
                    self._ledger.expect_reply(barrier)
                frames = self._encode_batches(records)
            kept.update(dict.fromkeys(current))
            if (news := self.will.ahead_news(current)) is not None:
                self._send_event(news)
            if frames:
                assert self._transport is not None
                self._transport.send(frames)
            if barrier is not None:
                self._send_request(barrier)
            with self._cond:
                self._cond.notify_all()  # room in the buffer for callers waiting under "block"
        if len(self.buffer) < self._early_wake():
            self.wake_at = self._early_wake()
        # Not all of it sent (the window is full, or the drop policy took some): the next cycle tells.
        if taken >= ahead and (news := self.will.news(tuple(kept))) is not None:
            self._send_event(news)

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

    def _encode_batches(self, records: list[Record]) -> bytes:
        """The frames of the next batches (one, unless it had to be split), kept until acknowledged. Under the lock."""
        protocol = self._protocol
        assert protocol is not None
        batches = self._encode(records, protocol.send) if records else []
        for seq, frame, count in batches:
            self._ledger.sent(seq, frame, count)
        return batches[0][1] if len(batches) == 1 else b"".join(frame for _, frame, _ in batches)
