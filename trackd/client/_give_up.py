"""What becomes of events a daemon does not take, and the one line each that says so.

A bounded flush (exit, close, end_run) waits at most its timeout; then what the daemon has not
acknowledged goes to the spool file (``_give_up_on_daemon``), and one line says how many events
went there and why. Events neither a daemon nor the spool took are held in memory, or lost when
the sender closes (``_report_held``); events other threads log after the close's final drain are
late (``take_late``); items the daemon refused are named by the flush that takes them
(``_raise_failures``). The bounded flush runs on the caller's thread; the spooling itself is the
sender thread's (``SenderState._spool_pending``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ClientClosedError, DaemonUnavailable, DeliveryError, FlushTimeout, TrackdError
from ..protocol import Record
from .._paths import DaemonPaths
from .._process_names import forked_child
from .._signals import wait_keeping_lock
from ._family_notice import wait_ended, wait_unsaid, wait_unsaid_on_stderr
from ._lifecycle import exit_hurried, interpreter_exiting
from ._on_full import OnFullPolicy
from ._outbox import BARRIER, events, inline_size, warn
from ._spool import spool_file

if TYPE_CHECKING:
    from pathlib import Path

    from ._outbox import FlushReport


class GiveUp(OnFullPolicy):
    """A bounded flush that gives a stalled daemon up, and what it says of events not delivered
    (``Sender``'s base)."""

    _late_reported: int
    # This outage, a read was told it reads the store without events not delivered (flush_for_read).
    _read_as_is_said: bool

    if TYPE_CHECKING:
        # Sender's: a bounded flush is one of its flushes, and what follows when that runs out.
        def flush(
            self, timeout: float | None = None, *, take_failures: bool = True, stop_waiting: Callable[[], bool] | None = None,
            patient: bool = False, start: float | None = None,
        ) -> FlushReport: ...

    def _raise_failures(self) -> None:
        """DeliveryError naming the items the daemon refused since they were last taken, if any."""
        with self._cond:
            refusals = self._ledger.take_refusals()
        if refusals:
            raise DeliveryError(refusals.message(), refusals.sentences())

    def _warn_failures(self) -> None:
        """The close's line (at exit, or of a sender's last client) for the items refused that no
        flush() reported: counted all, and naming none the warning as it was refused named.

        Its line named the same item again: a param two ranks set differently was said twice,
        the warning's sentence repeated a few lines below.
        """
        with self._cond:
            refusals = self._ledger.take_refusals()
        if refusals:
            warn(refusals.message(warned=True))

    def take_late(self) -> int:
        """Late events not reported yet: logged by other threads after this closed sender's final
        drain (see close), counted now. The caller says how many."""
        self._take_late()
        with self._cond:
            late, self._late_reported = self._late - self._late_reported, self._late
        return late

    def _take_late(self) -> None:
        """Count and remove the records behind the final drain in a stopped sender's buffer.

        The records in front (``_drain_left``) are the thread's to send or spool until it stops;
        those neither the daemon nor the spool took stay, counted as lost by the close. Callers
        append on the right without the lock, so records are popped from there one at a time: one
        appended meanwhile is counted with them or at the next look.
        """
        with self._cond:
            if not self._closed:
                return
            keep = self._drain_left or 0
            late: list[Record] = []
            while len(self.buffer) > keep:
                try:
                    late.append(self.buffer.pop())
                except IndexError:
                    break
            barriers = [record[1] for record in late if record[0] == BARRIER]
            # At least 0: an artifact a thread logged after close went in uncounted (submit_artifact).
            self.buffered_bytes = max(0, self.buffered_bytes - sum(map(inline_size, late)))
            self._late += len(late) - len(barriers)
            for req in barriers:
                # A flush() called on the closed sender: nothing will answer it.
                req.error, req.done = ClientClosedError("Cannot flush a trackd client after close()."), True
            if barriers:
                self._cond.notify_all()

    def flush_or_warn(
        self, timeout: float, *, take_failures: bool = False, final: bool = False, exiting: bool = False, patient: bool = False,
    ) -> None:
        """Flush with a bounded wait, saying on stderr what is waiting and what was given up.

        When ``timeout`` runs out, what the daemon has not acknowledged goes to the spool file
        and one line says how many events and where: a daemon that is stopped rather than gone
        would otherwise keep them out of the store for good if this process exits. Until a daemon
        answers again, later calls do not wait for it a second time: exit ends the runs and then
        closes the clients, and each of those flushes with this bound.

        The wait ends sooner when an attempt to connect made during it finds no daemon and starts
        none (TRACKD_AUTOSTART=0, or the start failed): nothing is coming, so the events go to the
        spool at once rather than after the whole ``timeout``.

        ``final``: the sender closes after this (its thread stops), so events neither a daemon nor
        the spool took are lost, and one line says how many. ``exiting``: the process is exiting
        and that close comes next (the runs' end at exit); this flush leaves the counting to it.
        ``take_failures``: then one line counts the items refused that no flush() reported
        (``_warn_failures``), however the wait ended.

        ``patient`` (end_run and close() in the middle of a job): ``timeout`` bounds the daemon's
        silence, not the wait, which goes on while the daemon keeps acknowledging (a spool of
        hundreds of MB resent after a restart). A total bound gave a healthy, busy daemon up,
        spooled what it was writing and said it "did not answer". Exit keeps the total bound
        (``interpreter_exiting``): atexit, SIGTERM and a multiprocessing child's exit end in bounded time.
        """
        with self._cond:
            self._bounded_flushes += 1  # the thread leaves the word on these events to this flush
        try:
            self._bounded_flush(timeout, final=final, exiting=exiting, patient=patient)
        finally:
            with self._cond:
                self._bounded_flushes -= 1
        if take_failures:
            # Also when the wait ran out or gave the daemon up: the refusals received by then.
            self._warn_failures()

    def flush_for_read(self, timeout: float, what: str) -> None:
        """Deliver what this process logged before ``what`` (a read) reads the store, so that it
        reads its own writes; when no daemon takes them, let it read the store as it is, and say
        once an outage how many events it may miss.

        The wait is ``flush``'s with ``patient``: up to ``timeout`` of the daemon's silence (a
        daemon writing a spool resent after a restart keeps it going), ended sooner by an attempt
        to connect that finds no daemon and starts none. A daemon silent that long is given up, as
        ``flush_or_warn`` or a logging call waiting for room gives it up (what it has not
        acknowledged goes to the spool file), and until a daemon answers again reads do not wait
        for it. Reads raised FlushTimeout after TRACKD_CONNECT_TIMEOUT, then DaemonUnavailable at
        once, for as long as no daemon answered, where MLflow's FileStore reads the files with no
        daemon at all.
        """
        path = self.config.socket_path
        if self._spill.gave_up:
            self._read_as_is(what, self._gave_up_reason or f"the daemon at {path} has not answered since this process gave it up")
            return
        if (store := self._store_refusing_words()) is not None:
            # It holds them until the store takes writes again: no wait here makes that sooner.
            self._read_as_is(what, store)
            return
        failed = self._failed_connects
        try:
            self.flush(timeout, take_failures=False, stop_waiting=lambda: self._no_daemon_since(failed), patient=True)
            return
        except DaemonUnavailable:
            # The sender thread spooled them (no daemon for connect_timeout), or could not.
            reason = self._unreachable_words()
        except FlushTimeout:
            if self._no_daemon_since(failed):
                reason = self._unreachable_words()
            elif (store := self._store_refusing_words()) is not None:
                reason = store
            else:
                reason = (
                    f"the daemon at {path} answered nothing for {timeout:g} s while {what} waited for them "
                    f"(TRACKD_CONNECT_TIMEOUT): it may be stopped (SIGSTOP, a debugger), stuck writing to its disk "
                    "or deadlocked"
                )
                self._give_up_on_daemon(reason, quiet=True)  # this read's line says where they went
        self._read_as_is(what, reason)

    def _unreachable_words(self) -> str:
        """Why no daemon takes the events while none answers: its refusal, a start under way, or none."""
        if (refused := self._refused_words()) is not None:
            return refused
        if (starting := self._starting_words()) is not None:
            return f"{starting} and does not answer yet"
        return self._no_daemon_words()

    def _read_as_is(self, what: str, reason: str) -> None:
        """The one line, once an outage, for a read of the store that goes on without the events
        no daemon has written (nothing when there are none)."""
        with self._cond:
            pending, spooled = self._pending_locked(), self._spill.records
        if pending == 0 or self._read_as_is_said:
            return
        self._read_as_is_said = True
        held = pending - spooled
        where = [f"{spooled} spooled to {spool_file(self.config.spool_dir, self.client_id)}"] if spooled else []
        if held and (exc := self._spill.unwritable) is not None:
            where.append(f"{held} held in memory, lost if this process exits first, as the spool file cannot be written ({exc})")
        elif held:
            where.append(f"{held} in memory, on their way to the spool file" if spooled or self._spill.gave_up else f"{held} in memory")
        warn(
            f"{what} reads {self.store_root} as it is, and may miss {events(pending)} this process logged that "
            f"{'is' if pending == 1 else 'are'} not delivered yet ({'; '.join(where)}): {reason}. They are delivered "
            "when a daemon answers" + (f" (the spooled ones also by `trackd sync` on {socket.gethostname()})" if spooled else "")
            + "; until then reads do not wait for it, and this line is not repeated."
        )

    def _bounded_flush(self, timeout: float, *, final: bool, exiting: bool, patient: bool) -> None:
        """``flush_or_warn``'s wait, and the one line that says what it gave up."""
        patient = patient and not exiting and not interpreter_exiting()
        path = self.config.socket_path
        if self.pending() == 0 and not self._spill.gave_up:
            return  # nothing to deliver (a process whose only request found no daemon): nothing to say
        if self._spill.gave_up:
            # One that refused every attempt since, or that said its store refuses writes, answered:
            # quoted ("has not answered" was said of both).
            if (refused := self._refused_words()) is not None:
                since = f"{refused}; none has been let in since this process gave it up"
            elif (store := self._store_refusing_words()) is not None:
                since = f"{store}; this process gave it up earlier, and has not connected again since"
                self._give_up_on_daemon(since, final=final, exiting=exiting, store_refusing=True)
                return
            elif (starting := self._starting_words()) is not None:
                # "The daemon ... has not answered" was said of none: another process held the start lock.
                since = f"{starting} and has not answered since this process gave it up"
            else:
                since = f"the daemon at {path} has not answered since this process gave it up"
            self._give_up_on_daemon(since, final=final, exiting=exiting)
            return
        start = time.monotonic()
        failed, pending_before = self._failed_connects, self.pending()

        def no_daemon() -> bool:
            return self._no_daemon_since(failed)

        try:
            self.flush(timeout=min(1.0, timeout), take_failures=False, stop_waiting=no_daemon)
            return
        except FlushTimeout:
            pass
        except DaemonUnavailable as exc:
            self._not_delivered(exc, final=final, exiting=exiting)
            return
        except TrackdError as exc:
            warn(str(exc))
            return
        remaining = timeout - (time.monotonic() - self._counted_from(start, patient))
        if remaining > 0 and not no_daemon() and not exit_hurried():
            # A daemon that holds them for a store refusing writes, or that refuses this client,
            # answers: the line says what it said, which is what the wait is for.
            outage, refused, starting = self._store_outage, self._refused_words(), self._starting_words()
            waited_for, them = self._waited_for(path, written=outage is not None)
            # Only the spool file waits (``them`` None): "as long as it keeps acknowledging it" read
            # oddly of a file the daemon takes whole.
            acknowledging = f"as long as it keeps acknowledging {them}" if them else ""
            if patient and starting is not None:
                # No daemon to acknowledge: "as long as it keeps acknowledging them" was said while
                # another process held the start lock and started none.
                wait = (f"waiting for {waited_for}: up to {timeout:g} s for it to answer"
                        + (f", then {acknowledging}" if acknowledging else "") + " (TRACKD_EXIT_TIMEOUT).")
            elif patient:
                wait = (f"waiting for {waited_for}" + (f", {acknowledging}" if acknowledging else "")
                        + f" (up to {timeout:g} s without a reply, TRACKD_EXIT_TIMEOUT).")
            else:
                # "waiting up to 9 s" of a 10 s TRACKD_EXIT_TIMEOUT read as a wrong setting: the line
                # comes after the first second's wait.
                wait = f"waiting up to {remaining:.0f} s more ({timeout:g} s in all) for {waited_for}."
            # A forked worker whose family (its parent, the workers forked with it) said a wait
            # that covers its own says only what became of its events (the line after the wait):
            # 4 ranks with 2 DataLoader workers each printed 24 lines for one stalled daemon, a
            # "waiting" line from each of 12 processes, then its outcome. A wait said by none is
            # still said: the workers of a parent with nothing to deliver waited in silence.
            # So does any process whose wait another said on the same stderr covers, at exit or
            # in end_run (a `with start_run()` block's end): 4 ranks started by spawn or a
            # launcher printed the same "waiting" line 4 times, each before its outcome.
            waits_for, notes = timeout if patient else remaining, DaemonPaths(path).waits_said
            quiet = not wait_unsaid(waits_for) and forked_child() and (exiting or interpreter_exiting())
            if not quiet:
                quiet = not wait_unsaid_on_stderr(notes, waits_for)
            if not quiet:
                warn(
                    wait
                    + (f" It cannot write to the store now: {outage}" if outage is not None else "")
                    + (f" {refused[:1].upper()}{refused[1:]}; trackd tries again." if refused is not None else "")
                    + (f" {starting[:1].upper()}{starting[1:]} and does not answer yet." if starting is not None else "")
                )
            try:
                # Counted from ``start``, as the line's "(N s in all)": the remaining seconds from
                # ``start`` ended the wait a second early (at 1 s of "up to 1 s more (2 s in all)").
                self.flush(timeout=timeout, take_failures=False, stop_waiting=no_daemon, patient=patient, start=start)
                return
            except FlushTimeout:
                pass
            except DaemonUnavailable as exc:
                self._not_delivered(exc, final=final, exiting=exiting, said_count=True)
                return
            except TrackdError as exc:
                warn(f"{events(self.pending(), 'were not delivered')}: {exc}")
                return
            finally:
                # Delivered or given up, the wait said is over: it no longer quiets a later one's line.
                wait_ended(notes)
        if no_daemon() and (refused := self._refused_words()) is not None:
            reason = refused  # for good (another protocol version): nothing to wait for
        elif no_daemon():
            reason = self._no_daemon_words()
        elif exit_hurried():
            # "did not answer within 10 s" was not why: the wait was cut short.
            reason = (f"a second SIGTERM ended the wait for the daemon at {path} after "
                      f"{time.monotonic() - start:.1f} s of the {timeout:g} s allowed")
        elif timeout <= 0:
            # A healthy daemon was said not to have answered "within 0 s": it was given no time.
            reason = f"a timeout of 0 s (TRACKD_EXIT_TIMEOUT=0, or close(timeout=0)) does not wait for the daemon at {path}"
        elif (refused := self._refused_words()) is not None:
            reason = refused  # its connection limit (--max-connections), which may pass: the wait tried again
        elif (starting := self._starting_words()) is not None:
            # Another process holds the start lock and has started none yet: "the daemon ... did not
            # answer" (or "answered nothing") was said of a daemon that did not exist.
            reason = f"{starting} and has not answered in {timeout:g} s"
        elif (store := self._store_refusing_words(self._sent_on_connection())) is not None:
            # They are spooled too (the daemon may stop before the store recovers), and the spool's
            # copy of what it writes meanwhile is skipped when the spool is delivered.
            self._give_up_on_daemon(f"{store}, each once", final=final, exiting=exiting, store_refusing=True)
            return
        elif patient:
            reason = f"the daemon at {path} answered nothing for {timeout:g} s"
        elif self._heard_at > start and (written := pending_before - self.pending()) > 0:
            # A healthy daemon still writing what came before (a spool resent after a restart) was
            # said not to have answered.
            reason = (
                f"the daemon at {path} was busy: it wrote {events(written)} of this process in the {timeout:g} s "
                f"this wait allows (TRACKD_EXIT_TIMEOUT, or close(timeout=...)), with {self.pending()} still to write"
            )
        else:
            reason = f"the daemon at {path} did not answer within {timeout:g} s"
        self._give_up_on_daemon(reason, final=final, exiting=exiting)

    def _waited_for(self, path: Path, *, written: bool) -> tuple[str, str | None]:
        """What a bounded flush's wait is for, in its line, and the word for what the daemon
        acknowledges (None: only the spool file waits): the events to reach the daemon
        (``written``: to be written by it), but not those in the spool file, which a line already
        said are there (a spill, or its count).

        At exit with a stopped daemon, "N events spooled to ..." was followed by "waiting up to 2 s
        for N events to reach the daemon", of the same events: they were safe in the spool file,
        and the wait is for a daemon to take that file now rather than leave it for later.
        """
        with self._cond:
            pending, in_spool = self._pending_locked(), self._spill.records
        if in_spool and pending <= in_spool:
            return f"the daemon at {path} to answer and take the spool file", None
        reach = f"be written by the daemon at {path}" if written else f"reach the daemon at {path}"
        if in_spool:
            return f"{events(pending - in_spool)} not in the spool file to {reach}", "them"
        return f"{events(pending)} to {reach}", "them"

    def _still_at_work_reason(self) -> tuple[str, bool]:
        """Why the sender thread has not ended STOP_TIMEOUT after close() asked it to, for the line
        of what the close spools: what the daemon said, or what answered.

        It said "the daemon ... did not answer within 1 s of close()" in every case: of a daemon
        holding the final drain for a store that refuses writes (it had said so), and of none at
        all while a start was under way (the thread sat in the start's wait before it watched for
        a close). A thread that is not connected ends at once now (its waits watch for the close),
        so "no daemon" is for the moment it takes to notice. True with it: the daemon keeps the
        events for a store that refuses writes (see ``_give_up_on_daemon``).
        """
        path, after = self.config.socket_path, f"in the {self.STOP_TIMEOUT:g} s after close()"
        if (refused := self._refused_words()) is not None:
            return refused, False
        if (starting := self._starting_words()) is not None:
            return f"{starting} and has not answered {after}", False
        if self._transport is None:
            return f"no daemon answered at {path} {after}", False
        if (store := self._store_refusing_words(self._sent_on_connection())) is not None:
            return f"{store}, each once", True
        return f"the daemon at {path} did not answer within {self.STOP_TIMEOUT:g} s of close()", False

    def _sent_on_connection(self) -> int:
        """Events sent on the connection and not acknowledged yet (0 with none)."""
        with self._cond:
            return self._ledger.window()[0] if self._transport is not None else 0

    def _not_delivered(self, exc: DaemonUnavailable, *, final: bool, exiting: bool, said_count: bool = False) -> None:
        """A bounded flush failed without a daemon: say so, unless the spool said where the events went."""
        if self._spill.spooling:
            # The spool already said where the events are; the close says how many went since.
            self._spill.announce_kept(self._refusal)
            if final or exiting:
                self._spill.announce_more()
            return
        with self._cond:
            held = self._pending_locked() - self._spill.records
        if held > 0 and self._spill.unwritable is not None:
            # Neither the daemon nor the spool takes them: "held in memory and sent when a daemon
            # answers" was said twice at exit, of events the exit was about to lose.
            # A daemon that refused this client answered: quoted, not "no daemon answers".
            reason = self._refused_words() or f"no daemon answers at {self.config.socket_path}"
            self._report_held(held, reason, final=final, exiting=exiting)
            return
        warn(f"{events(self.pending(), 'were not delivered')}: {exc}" if said_count else str(exc))

    def _give_up_on_daemon(
        self, reason: str, *, final: bool = False, exiting: bool = False, store_refusing: bool = False, quiet: bool = False,
    ) -> None:
        """Have the thread spool everything the daemon has not acknowledged, then say what went where.

        ``store_refusing``: the daemon answers, and keeps what it received for a store that refuses
        writes (``reason`` says so): the line says when the spool is delivered then.

        Waits at most SPILL_TIMEOUT. Events already in the spool were announced before, by the
        spill or by an earlier give-up; only the ones added now are counted. Once a give-up has
        been announced, later ones (each sibling Client's close) add theirs quietly until the
        sender closes (``final``), which says how many more went: one line each, not one a close.
        ``quiet`` (a read, see ``flush_for_read``): the caller's line says what went where instead.
        """
        if not self._spill.gave_up:
            self._gave_up_reason = reason
        self._spill.announce_kept(self._refusal)  # before this line counts what it adds
        deadline = time.monotonic() + self.SPILL_TIMEOUT
        thread = self._thread
        waits = thread is not None and thread.is_alive() and thread is not threading.current_thread()
        # An earlier give-up at this exit whose spill outlasted its wait said nothing of it (the
        # close says that): what the spill wrote since is this line's to count, with the first
        # give-up's reason. It was said as "N more events were spooled ... after that line", of a
        # line never said, and no line said that they were not delivered, or why.
        unsaid_since = self._unsaid_since
        if (final or exiting) and not self._gave_up_announced:
            if waits:
                # A spill under way is written outside the sender's lock and counted in the file
                # once it ends: counted before that, its events were said again in a line of
                # their own after this one ("2 more events were not delivered: ...; spooled").
                with self._cond:
                    while self._spilling and (left := deadline - time.monotonic()) > 0:
                        wait_keeping_lock(self._cond, min(left, 0.01))
            # What a spill spooled since its line, before what this adds (after a give-up line,
            # _unannounced counts what followed it).
            if unsaid_since is None:
                self._spill.announce_more()
        before = self._spill.written if unsaid_since is None else min(unsaid_since, self._spill.written)
        # Past what an earlier line said was still being written (a give-up in the middle of a job
        # on a slow spool disk): written since, those were said again ("200 ... are spooled" at exit).
        before = max(before, self._moving_said_until)
        if unsaid_since is not None:
            reason, self._unsaid_since = self._gave_up_reason or reason, None
        if waits:
            assert thread is not None
            with self._cond:
                self._spill_requested = True
            self._poke()
            with self._cond:
                while self._spill_requested and thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                    wait_keeping_lock(self._cond, min(left, 0.05))
        with self._cond:
            spooled = self._spill.records
            # The spill asked for is still under way (a slow disk): what it has taken or will take
            # is on its way to the spool file, not "could not be moved" there, nor held.
            moving = self._moving_locked() if self._spill_requested and thread is not None and thread.is_alive() else 0
            if moving and self._spill.unwritable is None:
                # What the buffer took after that spill began goes there next (given up, everything
                # does): "held in memory" (or "lost" at the close), then spooled and counted again.
                moving = self._pending_locked() - spooled
            held = self._pending_locked() - spooled - moving
            written = self._spill.written
            added = written - before
            # Of those moving, the ones an earlier line said are still being written are not news.
            moving_new = max(0, min(moving, written + moving - before))
            if not self._spill_requested and self._spill.unwritable is None and thread is not None and thread.is_alive():
                # The thread spooled what it was asked to; what other threads logged since (a
                # system-metrics monitor logging through exit) goes to the spool with the close's
                # final drain, next, or is counted late. It was said to be "lost: could not be
                # moved to the spool file in time", of a spool that took it a moment later. In
                # the middle of a job (a logging call giving a stalled daemon up) it follows to
                # the spool the same way: not "held in memory".
                held = self._ledger.unacked_events
        self._unannounced += max(0, added)
        if quiet:
            # Counted as said: a later give-up (exit) counts only what follows, as after its own line.
            self._spill.told(self._moving_said_until)
            self._gave_up_announced = True
            self._unannounced = 0
            self._spill.held_said = self._spill.held_said or held > 0
            return
        if self._unannounced and (final or not self._gave_up_announced):
            # Nothing follows a final give-up (the sender closes): "Events logged after this are
            # spooled there too ..." was said by the close.
            more = spooled > self._unannounced
            warn(self._spill.gave_up_message(
                self._unannounced, reason, more=more, last=exiting or final, in_spool=spooled, store_refusing=store_refusing,
            ))
            self._spill.told(self._moving_said_until)
            self._gave_up_announced = True
            self._unannounced = 0
        if moving > 0 and (final or not exiting):
            # Said by the close at exit, not by the flush of the runs' end before it.
            if moving_new > 0:
                warn(self._spill.moving_message(
                    moving_new, self._gave_up_reason or reason, final=final, exiting=final and interpreter_exiting(),
                ))
                self._spill.told_moving(moving_new)  # counted here: the close's announce_more does not count them again
            self._moving_said_until = written + moving
        elif moving > 0:
            # The close counts them from here, written or still moving: past what this line said
            # (or left in _unannounced), which it counted again when a spill in several writes
            # (the unacknowledged batches, then the buffer in 4 MiB chunks) outlasted the wait.
            self._unsaid_since = before + max(0, added)
        if held > 0:
            self._report_held(held, self._gave_up_reason or reason, final=final, exiting=exiting)

    def _report_held(self, held: int, reason: str, *, final: bool, exiting: bool) -> None:
        """Say how many events neither a daemon nor the spool took: once, as lost, when the sender
        closes; not at all in the flush before that close at exit; else as held in memory, once an
        outage (not if the sender thread said so when the spool failed)."""
        if final:
            if not self._lost_reported:
                self._lost_reported = True
                warn(self._spill.held_message(held, reason, lost=True))
        elif not exiting and not self._spill.held_said:
            self._spill.held_said = True
            warn(self._spill.held_message(held, reason, lost=False))
