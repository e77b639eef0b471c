"""The on-full policy: what a logging call does when the sender's buffer is full.

The buffer has two bounds. ``max_buffered`` counts events: a metric costs ~145 bytes, so the
count bounds memory while the buffer holds metrics, and the caller's path checks it with one
``len()`` (``Client.log_metric``). ``max_buffered_bytes`` counts the content of inline artifacts
(``log_text``, ``log_dict``, ``log_artifact`` of a file up to MAX_INLINE_ARTIFACT_SIZE), which the
event count took as one event each: a loop of 1 MiB ``log_text`` calls beside a stopped daemon grew
the process by 512 MB in 0.4 s, and 25,000 of them would have been 25 GB. Only the artifact path
counts bytes (``admit_artifact``); a metric never looks at them.

Past either bound, TRACKD_ON_FULL decides: ``block`` waits for the room the sender thread makes as
it takes records (sending them, or spilling them to the spool file when no daemon answers);
``drop`` drops the newest and counts it. Bytes leave the count when the thread takes the records
(``SenderThread._next_chunk``): from there the unacknowledged window bounds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from .._signals import wait_keeping_lock
from ..protocol import CREATE_RUN, SET_TERMINATED, Record
from ._config import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_BUFFERED_BYTES
from ._outbox import BARRIER, events, inline_size, warn
from ._sender_thread import SenderThread

# Records the on-full policy does not wait for nor drop, up to RUN_RECORD_SLACK past the bound
# (see Sender.submit).
_RUN_RECORDS = frozenset((CREATE_RUN, SET_TERMINATED))
RUN_RECORD_SLACK = 64
# Under TRACKD_ON_FULL=block, a call waiting for room says so (once a sender) only when the daemon has
# said nothing for this long while it waited: stopped (SIGSTOP, a debugger), stuck on its disk, or
# gone and not replaced yet. A daemon that keeps acknowledging is the back-pressure the policy asks
# for (a loop logging faster than the ~1 M points/s a daemon writes, a daemon restarting within a
# second or two): "the daemon is not keeping up" was printed for it, after 1 s of waits in all, by
# every benchmark-like loop of a few million points and at every `trackd daemon stop` mid-loop,
# blaming a healthy daemon. wandb and MLflow say nothing then either; `stats()["blocked_s"]` counts it.
STALL_WARNING_AFTER = 2.0
# A call that has waited while the daemon acknowledged nothing for TRACKD_CONNECT_TIMEOUT gives
# it up (see _wait_for_room): the bound after which a daemon that does not answer a connection is
# treated as gone, and the buffer spooled, so a stopped daemon and a missing one cost a logging
# call the same. One daemon serves every job of a user: a SIGSTOP, a daemon stuck on a dead NFS
# store or a deadlock froze them all, for as long as it lasted.
_MIB = 1024 * 1024


class OnFullPolicy(SenderThread):
    """The buffer's two bounds and the policy that applies past them (``Sender``'s base)."""

    # The byte bound's line was printed (apart from the event bound's: either may come first).
    _warned_bytes: bool
    # A waiting call is giving the stalled daemon up (one at a time; see _wait_for_room).
    _stall_give_up = False
    # The line saying new events are dropped because neither the daemon nor the spool takes them.
    _warned_stall_drop = False

    if TYPE_CHECKING:
        # GiveUp's: spool what the daemon has not acknowledged, and say so in one line.
        def _give_up_on_daemon(
            self, reason: str, *, final: bool = False, exiting: bool = False, store_refusing: bool = False,
        ) -> None: ...

    def _on_full(self) -> None:
        """The event bound is reached: wait for room, or drop the newest records and count them."""
        if self.config.on_full == "drop":
            if self._drop_newest():
                warn(
                    f"the event buffer is full ({events(self.config.max_buffered)}) because {self._why_full()}; "
                    "new events are dropped and counted (TRACKD_ON_FULL=drop)."
                )
            return
        if not self._wait_for_room(
            lambda: len(self.buffer) < self.config.max_buffered or self._stopping, "_warned_full",
            lambda start: f"the event buffer is full ({events(self.config.max_buffered)}) because {self._why_full(start)}",
        ) and self._drop_newest(stalled=True):
            self._warn_stall_drop(f"the event buffer is full ({events(self.config.max_buffered)})")

    def _drop_newest(self, *, stalled: bool = False) -> bool:
        """Drop the newest records until the buffer has room, counting them; True the first time
        (``stalled``: the first time a stalled daemon's buffer drops, under ``block``)."""
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
                    self.buffered_bytes -= inline_size(record)
            self.buffer.extend(reversed(barriers))
            if self._drain_left is not None:
                self._drain_left = min(self._drain_left, len(self.buffer))
            flag = "_warned_stall_drop" if stalled else "_warned_full"
            first = not getattr(self, flag)
            setattr(self, flag, True)
        return first

    def _warn_stall_drop(self, full: str) -> None:
        """The one line (a sender) for events dropped under ``block``: the daemon was given up and
        the spool file cannot be written either, and waiting for either could last for ever."""
        warn(
            f"{full} and neither the daemon at {self.config.socket_path}, given up for acknowledging nothing, "
            f"nor the spool file takes events ({str(self._spill.unwritable).rstrip('.')}); new events are dropped and counted "
            "until one of them does, rather than wait for ever (TRACKD_ON_FULL=block)."
        )

    def admit_artifact(self, record: Record, size: int) -> bool:
        """Append an artifact record carrying ``size`` bytes of content within the byte bound.

        Under ``block`` it waits until the bytes buffered leave room for ``size`` (an artifact
        larger than the whole bound goes once the buffer holds no other); under ``drop`` a record
        without room is dropped and counted, and False returned. Checked and appended under one
        lock, so two threads never both take the same room. A Ctrl-C while it waits raises here,
        before the record is buffered: the call logged nothing.
        """
        if self.config.on_full == "drop":
            first = False
            with self._cond:
                admitted = self._has_room(size)
                if admitted:
                    self._append_artifact(record, size)
                else:
                    self._dropped += 1
                    first, self._warned_bytes = not self._warned_bytes, True
            if first:
                warn(f"{self._bytes_full()}; new artifacts are dropped and counted (TRACKD_ON_FULL=drop).")
            self._poke_past_half()
            return admitted
        if not self._wait_for_room(
            lambda: self._has_room(size), "_warned_bytes", self._bytes_full, poke=True,
            take=lambda: self._append_artifact(record, size),
        ):
            with self._cond:
                self._dropped += 1
                first, self._warned_stall_drop = not self._warned_stall_drop, True
            if first:
                self._warn_stall_drop(f"the event buffer holds its bound of inline artifact content ({self.config.max_buffered_bytes} bytes)")
            return False
        self._poke_past_half()
        return True

    def _wait_for_room(
        self, has_room: Callable[[], bool], warned: Literal["_warned_full", "_warned_bytes"], why: Callable[[float], str],
        *, poke: bool = False, take: Callable[[], None] | None = None,
    ) -> bool:
        """Under ``block``: wait until ``has_room()`` (room, or stopping), then ``take()`` the room
        under the same lock, so two threads never both take it; True then.

        Waits while the daemon acknowledges are the back-pressure the policy asks for: the one line
        (once a sender for each bound: the flag named by ``warned``) comes only once the daemon has
        said nothing for STALL_WARNING_AFTER while a call waits, with ``why(start)``'s words, and
        never while a daemon is being started (by this process or another): a start is no outage,
        and one that fails is, at once.

        A daemon that has said nothing for TRACKD_CONNECT_TIMEOUT while a call waits is given up,
        as a bounded flush gives it up (``_give_up_on_daemon``: its buffer and unacknowledged
        batches go to the spool file, one line says how many): the call then has room. From then
        until a daemon answers a new connection, a full buffer goes to the spool at once, quietly;
        and if the spool file cannot be written either, False: the caller drops and counts the
        newest events rather than wait for ever. Not while the daemon says its store refuses
        writes: it answers, keeps the events and writes them once the store recovers, and this
        process would reconnect to it at once and resend the spool into the same outage.
        ``poke``: wake the thread when there is no room, for the room only it makes (now, not at its
        next send interval).
        """
        start = time.monotonic()
        while True:
            stalled: float | None = None
            with self._cond:
                if poke and not has_room():
                    self._poke()
                while not has_room():
                    if self._spill.gave_up and not self._stall_give_up:
                        if self._spill.unwritable is not None:
                            self._blocked_s += time.monotonic() - start
                            return False
                        if not self._spill_requested:
                            # Given up already: what filled the buffer since goes to the spool now,
                            # not after another wait (the give-up line said what follows goes there).
                            self._spill_requested = True
                            self._poke()
                    elif (
                        not self._stall_give_up and not self._daemon_starting and self._store_outage is None
                        and (silent := self._silent_for(start)) >= self.config.connect_timeout
                    ):
                        self._stall_give_up = True
                        stalled = silent
                        break  # to give it up outside the lock: the spill takes the lock, stderr may block
                    if (
                        not getattr(self, warned) and not self._daemon_starting and not self._spill.gave_up
                        and self._silent_for(start) >= STALL_WARNING_AFTER
                    ):
                        setattr(self, warned, True)
                        waited, reason = self._blocked_s + time.monotonic() - start, why(start)
                        then = self._give_up_words(start)
                        break  # to say so outside the lock: stderr may block
                    wait_keeping_lock(self._cond, 0.1)  # a Ctrl-C here reaches the caller as it is
                else:  # room, or stopping
                    if take is not None:
                        take()
                    self._blocked_s += time.monotonic() - start
                    return True
            if stalled is None:
                warn(f"logging calls are waiting for room ({waited:.1f} s in all so far): {reason}{then} (TRACKD_ON_FULL=block).")
                continue
            try:
                self._give_up_on_daemon(
                    f"the daemon at {self.config.socket_path} acknowledged nothing for {stalled:.0f} s while logging calls "
                    f"waited for room (TRACKD_CONNECT_TIMEOUT={self.config.connect_timeout:g}): it may be stopped "
                    "(SIGSTOP, a debugger), stuck writing to its disk or deadlocked"
                )
            finally:
                with self._cond:
                    self._stall_give_up = False
                    self._cond.notify_all()

    def _give_up_words(self, start: float) -> str:
        """What the waiting calls come to if the daemon stays silent, as a clause for the stall line:
        the give-up TRACKD_CONNECT_TIMEOUT brings (see _wait_for_room); nothing while the daemon
        says its store refuses writes (it holds the events, and the calls wait for the store).

        A user reading "logging calls are waiting for room" on a job's stderr could not tell a
        wait of seconds from one as long as the daemon stayed stopped (it was, before the give-up),
        and killed jobs that were about to go on."""
        if self._store_outage is not None:
            return ""
        connect_timeout = self.config.connect_timeout
        more = max(0.0, connect_timeout - self._silent_for(start))
        return (
            f"; if it stays silent, trackd gives it up and spools the events after {more:.0f} s more "
            f"(TRACKD_CONNECT_TIMEOUT={connect_timeout:g}), and the calls go on"
        )

    def _has_room(self, size: int) -> bool:
        held = self.buffered_bytes
        return held == 0 or held + size <= self.config.max_buffered_bytes or self._stopping

    def _append_artifact(self, record: Record, size: int) -> None:
        """Under the lock: buffer the record and count its bytes."""
        self.buffer.append(record)
        self.buffered_bytes += size

    def _poke_past_half(self) -> None:
        """Past half the byte bound, have the thread take the records now (send them, or spill them
        when no daemon answers, as at half the event bound) rather than at its next interval."""
        if self.buffered_bytes >= self.config.max_buffered_bytes // 2:
            self._poke()

    def _bytes_full(self, start: float | None = None) -> str:
        """The on-full line's words for the byte bound: what it is, and why the buffer reached it
        (``start``: when the waiting call began, see ``_why_full``)."""
        bound = self.config.max_buffered_bytes
        why = self._why_full(start, small=(
            "" if bound >= DEFAULT_MAX_BUFFERED_BYTES
            else f", or the bound is small for these artifacts (the default is {DEFAULT_MAX_BUFFERED_BYTES // _MIB} MiB)"
        ))
        return (
            f"the event buffer holds its bound of inline artifact content (TRACKD_MAX_BUFFERED_BYTES={bound}, "
            f"{bound / _MIB:.1f} MiB) because {why}"
        )

    def _silent_for(self, start: float) -> float:
        """Seconds since the daemon last said anything (or this client connected), counted from
        ``start`` at the earliest: a call that began waiting then has heard nothing for this long."""
        return time.monotonic() - self._counted_from(start, patient=True)

    def _why_full(self, start: float | None = None, *, small: str | None = None) -> str:
        """Why the buffer filled, for the on-full line: a first connection still under way, a daemon
        leaving, none at all, one that has said nothing since the call began waiting at ``start``, or
        one that writes slower than this process logs (``small``: the words for a small bound, the
        event bound's by default)."""
        path = self.config.socket_path
        if small is None:
            # A buffer smaller than what the loop logs between two sends fills beside an idle daemon.
            small = "" if self.config.max_buffered >= DEFAULT_MAX_BUFFERED else (
                f", or the buffer is small for this logging rate "
                f"(TRACKD_MAX_BUFFERED={self.config.max_buffered}; the default is {DEFAULT_MAX_BUFFERED})"
            )
        if self._transport is None and not self._spill.unavailable_for() and not self._daemon_leaving:
            # Not connected yet, and no attempt has failed: a forked worker (a Pool's) logging its
            # first points while its thread makes its own first connection, or a process whose
            # thread starts the daemon. Each Pool worker said "no daemon answers" of a daemon
            # that answered it a millisecond later.
            starting = " (starting one if none answers)" if self.config.autostart else ""
            return f"this process is still connecting to the daemon at {path}{starting}{small}"
        if self._transport is None:
            # The daemon died (SIGKILL) or is restarting: "not keeping up" sent users looking at
            # a daemon that was not there.
            if self._daemon_leaving:
                return (f"the daemon at {path} shut down (`trackd daemon stop`, a restart) and none answers there "
                        f"yet; trackd keeps trying to reconnect")
            # Nor is a daemon missing while one starts after an attempt failed: the drop policy's
            # line, at the first drop, said "no daemon answers" of a start under way (the block
            # policy's line waits for the start, see _wait_for_room).
            if (under_way := self._starting_words()) is not None:
                return f"{under_way} and does not answer yet"
            if (refused := self._refused_words()) is not None:
                # It said "no daemon answers" of one that answered, over its --max-connections.
                return f"{refused}; trackd keeps trying to connect"
            return f"no daemon answers at {path}; trackd keeps trying to reconnect"
        if (store := self._store_refusing_words()) is not None:
            # It said "the daemon is not keeping up" (drop), or that it "may be stopped" (block),
            # of a daemon that had said its store refuses writes (a full disk).
            return store
        if self._daemon_leaving:
            return f"the daemon at {path} is shutting down (`trackd daemon stop`, a restart); trackd reconnects to the next one"
        silent = self._silent_for(start) if start is not None else 0.0
        if silent >= STALL_WARNING_AFTER:
            return (f"the daemon at {path} has acknowledged nothing for {silent:.0f} s: it may be stopped "
                    f"(SIGSTOP, a debugger) or stuck writing to its disk")
        return f"the daemon is not keeping up{small}"
