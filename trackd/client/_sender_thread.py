"""The sender thread's half of the Sender: its loop, sending batches and the spool file again after
a reconnect, and reading the daemon's replies; connecting (starting a daemon when none answers)
is ``SenderConnect``'s (``_sender_connect.py``).

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
from ._lifecycle import interpreter_exiting
from ._outbox import Request, events, log_exception, warn
from ._sender_connect import SenderConnect
from ._transport import empty_pipe, gave_up_error, readable


class SenderThread(SenderConnect):
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
                if self._transport is None and self._connect_ahead_pending:
                    self._connect_ahead()
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
                        if not self._spill.unreadable:
                            # (A spool file that fails each resend keeps the backoff growing: it
                            # reconnected 20 times a second while an EIO lasted.)
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
                if self._spill.unreadable_for_now(exc):
                    # An I/O error or a shortage partway through the file, as at its open (see
                    # _connect): kept whole and read again after the next connection's resume_seq.
                    # It was cut back to the last batch read, as if damaged, and the rest was lost.
                    raise DaemonUnavailable(f"The spool file could not be read back for now ({exc}).") from exc
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
            warn(self._retrying_words(exc, self.pending()))

    def _retrying_words(self, exc: BaseException, held: int) -> str:
        """The line for an outage that a process goes on retrying through, ``held`` events waiting.

        With TRACKD_AUTOSTART=0 and nothing listening it said "The trackd daemon at <socket> is
        unreachable: No such file or directory. Holding N events and retrying.": the errno's words,
        and nothing of what would end the wait. It says it as the line that spools them does.
        """
        holding = f"Holding {events(held)} and retrying" if held else "Retrying"
        if not self.config.autostart and isinstance(exc, DaemonUnavailable) and self._nothing_listens(exc):
            return f"{self._no_daemon_words()}. {holding} until one answers: `trackd daemon start` starts one."
        return f"{exc} {holding}."

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
        self._rearm_wake(taken)
        # Not all of it sent (the window is full, or the drop policy took some): the next cycle tells.
        if taken >= ahead and (news := self.will.news(tuple(kept))) is not None:
            self._send_event(news)
