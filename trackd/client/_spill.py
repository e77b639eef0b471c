"""The sender's spill: when its events leave memory for the spool file, and what flushes are told.

A short outage (a daemon restarting) costs nothing: the sender holds its batches and resends them.
Once no daemon has answered for ``connect_timeout`` seconds, or the buffer is half full, the
sender spills what it holds to its spool file (``_spool.py`` defines the file), so memory stays
bounded and a process that exits leaves its events for the next client or ``trackd sync``. This
module makes that decision, owns the file while the client lives, and words the warnings and the
error a waiting flush gets. The batches themselves are the sender's: it passes them in.

A bounded flush that runs out of time (exit, end_run, close), or a logging call that waited for
room while the daemon acknowledged nothing for ``connect_timeout``, gives the daemon up: it may be
stopped rather than gone, answering nothing while it accepts connections and bytes, and an
exiting process must not take the events with it. From then until a daemon answers, the outage
counts as a long one: events go to the spool and flushes are told where they are.

When a daemon answers again, the spool file is sent again from the batch after the daemon's
``resume_seq``, read one frame at a time as the sender's window makes room (``replay``,
``next_spooled``): the file may hold gigabytes, and the process never holds more of it than the
frame being sent. The file goes once the daemon acknowledges its last batch.

Only the sender thread changes this state (and a forked child, which abandons it); callers
read ``spooling``, ``records`` and ``gave_up``.
"""

from __future__ import annotations

import collections
import errno
import socket
import time
from pathlib import Path
from typing import NamedTuple

from ..errors import DaemonUnavailable
from ._config import ClientConfig
from ._outbox import events, warn
from ._delivery import deliver_orphans_in_background
from ._spool import Spool, SpoolReader, SpoolRemoval, spool_file
from ._transport import make_hello, refused_words

# Spools are delivered on the host that wrote them (see deliver_spool): the messages name it.
_HOST = socket.gethostname()
# A delivered spool file was left on disk (see Spill.finish_removals), and stderr told so.
_kept_said = False
# Why a spool file may not be read back now but may later (see Spill.unreadable_for_now).
_FOR_NOW = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EIO, errno.EINTR, errno.EAGAIN, errno.ETIMEDOUT,
    errno.ENOLCK,
})


class Written(NamedTuple):
    """What ``Spill.write`` did, for ``Spill.count``: its batches, the runs the file names after
    them (None: as before), or why they could not be written."""

    batches: list[tuple[int, bytes, int]]
    named: dict[str, None] | None = None
    error: OSError | None = None


class _Replay:
    """The spool file being sent again: where its reading is, and its batches sent but not acknowledged."""

    def __init__(self, reader: SpoolReader, after: int) -> None:
        self.reader = reader
        self.batches = reader.batches()
        self.after = after  # the daemon holds the batches up to this one
        self.last_read = 0  # the last batch read whole: the file is good up to reader.offset after it
        self.in_flight: collections.deque[tuple[int, int, int]] = collections.deque()  # (seq, records, bytes)
        self.events = 0
        self.bytes = 0
        self.undecodable_seen = 0  # of reader.undecodable, the entries counted lost already
        # Read to its end (the reader closed): kept until its last batches are acknowledged, which
        # count in the window until then (the buffer sent a whole window more beside them).
        self.read = False

    def acked(self, seq: int) -> None:
        self.after = max(self.after, seq)
        while self.in_flight and self.in_flight[0][0] <= seq:
            _, records, size = self.in_flight.popleft()
            self.events -= records
            self.bytes -= size


class Spill:
    """One client's outage clock, its spool file, and whether events go there now."""

    def __init__(self, config: ClientConfig, client_id: str, store_root: str, artifact_root: str | None = None) -> None:
        self._config = config
        self._client_id = client_id
        self._store_root = store_root
        self._artifact_root = artifact_root
        self._spool: Spool | None = None
        # Since the last connect, events go to the spool rather than wait in memory.
        self.spooling = False
        self._announced = False
        # Records the spool file held when announce() said how many.
        self._announced_records = 0
        self._unavailable_since: float | None = None
        # A bounded flush gave the daemon up, and no daemon has answered since.
        self.gave_up = False
        # Stderr was told, this outage, that events the spool file could not take are held in
        # memory: by the sender thread when the spool first failed, or by a flush. Said once: a
        # job's end_run said it again, with the count of the line before, and exit then said
        # they are lost (that line alone follows, with every one of them counted).
        self.held_said = False
        # Why the spool file could not be written the last time it was tried (None: it could).
        self.unwritable: OSError | None = None
        self._synced_orphans = False
        self._replay: _Replay | None = None
        # (records, why) of spooled batches found undecodable on the way, for the sender to report.
        self._lost: list[tuple[int, str]] = []
        # Delivered spool files to delete once the sender's lock is released (see finish_removals).
        self._removals: list[SpoolRemoval] = []
        # The spool file could not be read back for now (see unreadable_for_now), and no resend
        # read it to its end since: stderr was told once, and the sender's backoff keeps growing.
        self.unreadable = False
        # The connection broke and no attempt to connect has failed since: a spill is not announced
        # yet (``_deferred`` remembers one was not). A daemon stopped or restarted is replaced
        # within milliseconds (autostart starts its successor), and "no daemon answers at ..."
        # was said for it, followed at once by "reconnected": only a failed attempt is an outage.
        self._quiet = False
        self._deferred = False

    @property
    def records(self) -> int:
        """Records in the spool file that the daemon has not acknowledged."""
        return self._spool.waiting if self._spool is not None else 0

    @property
    def written(self) -> int:
        """Records written to the spool file, acknowledged or not: what a spill added is the
        difference (acks that arrive meanwhile do not make it smaller)."""
        return self._spool.records if self._spool is not None else 0

    # -- the outage --------------------------------------------------------------------------------

    def lost(self) -> None:
        """No daemon answers: start the outage clock, unless it already runs."""
        if self._unavailable_since is None:
            self._unavailable_since = time.monotonic()

    def idle(self) -> None:
        """Nothing waits for a daemon: an outage is counted from the next attempt (events logged
        hours after a `trackd daemon stop` were spooled at once, without a connect_timeout's wait)."""
        self._unavailable_since = None

    def answered(self) -> bool:
        """A daemon answers again: the outage is over, and new events go to it. True if stderr
        was told the events went to the spool file (so it is told where they go now)."""
        announced = self._announced
        self._unavailable_since = None
        self.spooling = False
        self._announced = False
        self.gave_up = False
        self.held_said = False
        self._quiet = self._deferred = False
        return announced

    def broke(self) -> None:
        """The connection broke: a spill is announced once an attempt to connect again fails."""
        self._quiet = True

    def attempt_failed(self) -> None:
        """An attempt to connect found no daemon (or one that refused): the next spill, or the
        one kept quiet (the sender spools again on each failure while spooling), is announced."""
        self._quiet = False

    def should_spool(self, buffered: int, buffered_bytes: int) -> bool:
        """Spool once the daemon has been unreachable for connect_timeout, or the buffer is half full
        (in events, or in bytes of inline artifact content)."""
        config = self._config
        return (
            self.spooling or buffered >= config.max_buffered // 2 or buffered_bytes >= config.max_buffered_bytes // 2
            or self.outlasted_connect_timeout()
        )

    def unavailable_for(self) -> float:
        """Seconds since the outage began: since an attempt to connect failed (or the connection
        broke) with something to deliver, and no daemon has answered; 0.0 with no outage."""
        since = self._unavailable_since
        return 0.0 if since is None else time.monotonic() - since

    def outlasted_connect_timeout(self) -> bool:
        """No daemon has answered for ``connect_timeout`` seconds: not a restart, a daemon that is gone."""
        since = self._unavailable_since
        return self.gave_up or (since is not None and time.monotonic() - since >= self._config.connect_timeout)

    def give_up(self) -> None:
        """A bounded flush ran out of time: treat the daemon as gone until one answers.

        The flush that gave up says how many events the spool holds (``gave_up_message``), so
        the spill that follows is not announced as well.
        """
        self.lost()
        self.gave_up = True
        self._announced = True

    # -- the spool file ----------------------------------------------------------------------------

    def write(self, batches: list[tuple[int, bytes, int]], owned: tuple[str, ...] = ()) -> Written:
        """Append (seq, frame, records) batches to the spool file, made on first use, after the
        runs of ``owned`` the file does not name yet (see Spool.append); ``count`` then says so.

        Only the file changes here, and what only the sender thread reads: the sender calls this
        without its lock, and ``count`` under it. A slow or hung spool disk (NFS) held the lock
        for as long as the disk did, and with it every logging call that drops (TRACKD_ON_FULL=drop),
        every flush, and the exit's bounded waits.
        """
        if not batches:
            return Written(batches)
        # A file delivered and not deleted yet goes first: the next one is made at its path.
        self.finish_removals()
        if self._spool is None:
            self._spool = Spool(self._config.spool_dir, make_hello(self._client_id, self._store_root, self._artifact_root))
        try:
            return Written(batches, named=self._spool.write(batches, owned))
        except OSError as exc:
            return Written(batches, error=exc)

    def count(self, written: Written) -> OSError | None:
        """Count what ``write`` put in the spool file (under the sender's lock).

        Returns the OSError when the file could not be written, so the sender keeps the batches.
        Nothing to write changes nothing: ``spooling`` says events are in the file, and exit stays
        quiet about them on that word.
        """
        if not written.batches:
            return None
        if written.error is not None:
            self.unwritable = written.error
            return written.error
        assert self._spool is not None
        self._spool.count(written.batches, written.named)
        self.unwritable = None
        self.spooling = True
        return None

    def announce(self, refusal: str | None = None, *, now: bool = False) -> None:
        """Say once per outage, after a spill, how many events the spool file holds and where;
        ``refusal``: what a daemon that refuses this client said (it answers, so "no daemon
        answers" was wrong one line after the client said it was refused). Between a broken
        connection and a failed attempt to connect, only ``now`` (nothing will try again: the
        sender is stopping) says it; otherwise it is kept for that failure, or ``announce_kept``."""
        if self._announced or self._spool is None or not self._spool.waiting:
            return
        if self._quiet and not now:
            self._deferred = True
            return
        self._deferred = False
        self.told()
        path = self._config.socket_path
        why = refused_words(path, refusal) if refusal else f"no daemon answers at {path}"
        warn(
            f"{why}; {events(self._spool.waiting)} spooled to "
            f"{self._spool.path}; they are delivered when a daemon answers, or by `trackd sync` on {_HOST}."
        )

    def announce_kept(self, refusal: str | None = None) -> None:
        """Say now the spill kept quiet while an attempt to connect was under way (a flush gives
        the daemon up before it ended): its count would otherwise be in no line."""
        if self._deferred:
            self.announce(refusal, now=True)

    def told(self, through: int = 0) -> None:
        """A line (a bounded flush giving up) has just said how many events the spool file holds, and
        one before it those up to ``through`` records, still being written then (see told_moving)."""
        self._announced = True
        self._announced_records = max(self.written, through)

    def told_moving(self, count: int) -> None:
        """A line said ``count`` events were still being written to the spool file (``moving_message``):
        once written they are not "more" for ``announce_more`` (at exit the same 200 were said twice)."""
        self._announced_records += count

    def announce_more(self) -> None:
        """At the close: say how many events went to the spool file after announce() said how many.

        A job that logs on while no daemon takes its events (refused by an older daemon, or none
        answering) spools the rest quietly; its one line gave the count of the first spill only.
        """
        spool = self._spool
        if not self._announced or spool is None or spool.records <= self._announced_records:
            return
        more, self._announced_records = spool.records - self._announced_records, spool.records
        warn(
            f"{events(more, 'were spooled', more=True)} to {spool.path} after that line, {events(spool.waiting)} "
            f"in all; they are delivered when a daemon answers, or by `trackd sync` on {_HOST}."
        )

    # -- sending the spool file again --------------------------------------------------------------

    def replay(self, after: int) -> tuple[int, int]:
        """Start sending the spool file again, from the batch after ``after`` (the daemon holds the
        ones up to it); returns how many batches that is, and their records. OSError or
        RemoteProtocolError when the file cannot be read back (see ``lost_file``). It opens the file
        and reads its Hello: the sender calls it without its lock (see ``write``)."""
        self.stop_replay()
        spool = self._spool
        if spool is None:
            return 0, 0
        count, records = spool.batches_after(after), spool.records_after(after)
        if count:
            self._replay = _Replay(spool.reader(), after)
        return count, records

    def next_spooled(self) -> bytes | None:
        """The spool file's next frame to send, counted in flight until acknowledged; None once
        every batch is sent (or acknowledged). OSError or RemoteProtocolError when the rest of the
        file cannot be read (see ``unreadable_for_now``, else ``cut_unreadable``). A batch on the way that does not decode is
        left out and counted lost (``take_lost``): it cost the rest of the file."""
        replay = self._replay
        if replay is None or replay.read:
            return None
        refused = self._spool.refused if self._spool is not None else set()
        for seq, records, frame in replay.batches:
            self._count_undecodable(replay)
            replay.last_read = seq
            if seq > replay.after and seq not in refused:
                replay.in_flight.append((seq, records, len(frame)))
                replay.events += records
                replay.bytes += len(frame)
                return frame
        self._count_undecodable(replay)
        replay.reader.close()
        replay.read = True
        self.unreadable = False
        self._forget_read_replay()
        spool = self._spool
        if spool is not None and spool.last_seq and spool.delivered_by(replay.after):
            # The last batches did not decode: no ack will come for them to remove the file.
            self._remove(spool)
        return None

    def _count_undecodable(self, replay: _Replay) -> None:
        """Count lost, once each, the batches ``replay`` found undecodable since the last call."""
        spool, found = self._spool, replay.reader.undecodable
        assert spool is not None
        for index, reason in found[replay.undecodable_seen :]:
            if (lost := spool.lose(index, reason)) is not None:
                self._lost.append(lost)
        replay.undecodable_seen = len(found)

    def take_lost(self) -> list[tuple[int, str]]:
        """(records, why) of each spooled batch found undecodable since the last call: reported once."""
        lost, self._lost = self._lost, []
        return lost

    def in_flight(self) -> tuple[int, int]:
        """Records and bytes sent from the spool file on this connection and not acknowledged yet."""
        replay = self._replay
        return (replay.events, replay.bytes) if replay is not None else (0, 0)

    def _forget_read_replay(self) -> None:
        """Drop the replay once it is read to its end and nothing it sent waits for an ack."""
        replay = self._replay
        if replay is not None and replay.read and not replay.in_flight:
            self._replay = None

    def stop_replay(self) -> None:
        """Stop reading the spool file: sent, given up with the connection, or removed."""
        if self._replay is not None:
            self._replay.reader.close()
            self._replay = None

    def unreadable_for_now(self, exc: Exception) -> bool:
        """Whether ``replay`` or ``next_spooled`` raised ``exc`` for a shortage that passes
        (descriptors, memory, an I/O error), not because the file is gone or damaged: it is kept,
        and stderr told once until a resend reads it to its end (or it goes).

        A process near its RLIMIT_NOFILE (a DataLoader's workers) reconnected with one descriptor
        free, the socket took it, and EMFILE on opening the spool file deleted it, every event in it
        lost; an EIO partway through cut it back to the last batch read, as if damaged.
        """
        if not isinstance(exc, OSError) or exc.errno not in _FOR_NOW or self._spool is None:
            return False
        if not self.unreadable:
            self.unreadable = True
            warn(
                f"could not read spool file {self._spool.path} back to resend it ({exc}); its "
                f"{events(self._spool.waiting)} stay in it, and it is read again at the next attempt to connect "
                f"(or by `trackd sync` on {_HOST})."
            )
        return True

    def lost_file(self, seq: int, exc: Exception) -> tuple[int, str]:
        """The spool file could not be read back (``replay`` raised ``exc``): forget it, and
        return how many of its records after ``seq`` are lost, with the sentence that says so."""
        spool = self._spool
        assert spool is not None
        lost = spool.records_after(seq)
        self.stop_replay()
        self._remove(spool)
        return lost, _unreadable(lost, spool.path, exc)

    def truncate_unreadable(self) -> OSError | None:
        """The rest of the spool file could not be read (``next_spooled`` raised): cut the file back
        to its last whole batch, which was sent; then ``cut_unreadable`` counts it, under the
        sender's lock (this runs without it: the disk may be slow). The OSError if it could not be cut."""
        spool, replay = self._spool, self._replay
        assert spool is not None and replay is not None
        try:
            spool.truncate(replay.reader.offset)
        except OSError as exc:
            return exc
        return None

    def cut_unreadable(self, exc: Exception, acked_seq: int, truncated: OSError | None) -> tuple[int, str]:
        """Count the spool file cut back by ``truncate_unreadable`` (which returned ``truncated``)
        after ``next_spooled`` raised ``exc``: how many records that loses, with the sentence that
        says so. Damaged by someone else (the client writes whole frames); what came before the
        damage is delivered, and no reconnect reads the damage again."""
        spool, replay = self._spool, self._replay
        assert spool is not None and replay is not None
        self.stop_replay()
        self._count_undecodable(replay)
        if truncated is not None:
            return self.lost_file(replay.last_read, exc)
        lost = spool.cut(replay.reader.frames)
        if spool.delivered_by(acked_seq):
            self._remove(spool)
        return lost, _unreadable(lost, spool.path, exc)

    def refuse(self, seq: int, acked_seq: int) -> int:
        """The daemon refused batch ``seq`` of the spool file whole (``BadBatch``): skip it from now
        on, and delete the file if nothing after ``acked_seq`` is left to deliver; returns its
        records (0: the file does not hold it). Sent again at every reconnect, and by every
        `trackd sync` of the file, it used to be refused again each time."""
        spool, replay = self._spool, self._replay
        records = spool.refuse(seq) if spool is not None else 0
        if replay is not None:
            for item in [item for item in replay.in_flight if item[0] == seq]:
                replay.in_flight.remove(item)
                replay.events -= item[1]
                replay.bytes -= item[2]
            self._forget_read_replay()
        if spool is not None and records and spool.delivered_by(acked_seq):
            self.stop_replay()
            self._remove(spool)
        return records

    def acked(self, seq: int) -> None:
        """The daemon wrote batches up to ``seq``: delete the spool file once that covers all of it."""
        if self._replay is not None:
            self._replay.acked(seq)
            self._forget_read_replay()
        spool = self._spool
        if spool is not None:
            spool.acked(seq)
        if spool is not None and spool.last_seq and spool.delivered_by(seq):
            self.stop_replay()
            self._remove(spool)

    def _remove(self, spool: Spool) -> None:
        """Forget the delivered spool file (under the sender's lock, or not); ``finish_removals``
        deletes it, without the lock: its stat, unlink and close wait for the disk (see Spool.detach)."""
        self.unreadable = False
        if (removal := spool.detach()) is not None:
            self._removals.append(removal)

    def finish_removals(self) -> None:
        """Delete the delivered spool files (the sender thread, without its lock); one left on
        disk is said once per process (an unlink refused raised in the sender thread, which
        dropped its connection and said "trackd sender thread failed" at each delivery)."""
        global _kept_said
        while self._removals:
            removal = self._removals[0]
            try:
                kept = removal.finish()
            finally:
                # Forgotten once closed: a child forked before that closes its copy (see abandon).
                del self._removals[0]
            # Once per process, as docs/guarantees.md says (a Spill is per sender: it was once per
            # store); a file left whole, which `trackd sync` would send again, is said each time.
            if kept is not None and (removal.left_whole or not _kept_said):
                _kept_said = True
                warn(f"spool file {removal.path} was delivered but {kept}.")

    def abandon(self) -> None:
        """In a forked child: forget the parent's spool file without touching it."""
        self.stop_replay()
        if self._spool is not None:
            self._spool.abandon()
        for removal in self._removals:
            removal.abandon()
        self._removals = []

    def deliver_orphans_once(self) -> None:
        """After the first connect, deliver in the background the spools of processes that exited."""
        if self._synced_orphans:
            return
        self._synced_orphans = True
        deliver_orphans_in_background(self._config.spool_dir, self._config.socket_path, self._path())

    # -- what flushes and stderr are told ----------------------------------------------------------

    def spooled_error(self, reason: BaseException) -> DaemonUnavailable:
        """What a flush gets when it cannot complete without a daemon: where its events are instead."""
        if not self.records:
            # This used to say "0 events are spooled to None" (at exit, after a failed set_experiment).
            return DaemonUnavailable(
                f"No trackd daemon answers at {self._config.socket_path} ({reason}); no events were waiting, "
                "so none were spooled."
            )
        return DaemonUnavailable(
            f"No trackd daemon answers at {self._config.socket_path} ({reason}); {events(self.records, 'are')} "
            f"spooled to {self._path()} and delivered when a daemon answers (or by `trackd sync` on {_HOST})."
        )

    def gave_up_message(
        self, count: int, reason: str, *, more: bool, last: bool = False, in_spool: int = 0, store_refusing: bool = False,
    ) -> str:
        """The one line a flush that gave up prints: how many events, why, and where they are;
        ``last``: the process is exiting or the sender closing, so nothing follows; ``in_spool``:
        the events the spool holds in all, said when more than these (a spool being resent: "1 more
        event was not delivered" read as if one event was all that waited, beside 2.2M).

        ``store_refusing``: the daemon answers, and keeps what it received for a store that refuses
        writes (``reason`` says so). "Delivered when a daemon answers" was said of a daemon that had
        answered; the spool is for a daemon that stops before the store recovers (delivered, it
        skips what the daemon wrote), and what follows goes to the daemon, which this process
        reconnects to at once.
        """
        total = f" ({events(in_spool)} in that spool in all)" if more and in_spool > count else ""
        if store_refusing:
            return (
                f"{events(count, 'were not delivered', more=more)}: {reason}; {_they(count, 'are')} spooled to "
                f"{self._path()}{total} and delivered from there once the store takes writes again, by this process or "
                f"the next trackd process to connect, or by `trackd sync` on {_HOST}."
            )
        return (
            f"{events(count, 'were not delivered', more=more)}: {reason}; {_they(count, 'are')} spooled to "
            f"{self._path()}{total} and delivered when a daemon answers, or by `trackd sync` on {_HOST}."
            # Conditional: a script's last end_run() gives up here too, and "Until then, what follows
            # is spooled there too" was its last word, of nothing that followed.
            + ("" if more or last else " Events logged after this are spooled there too until a daemon answers, and counted when this process closes its clients.")
        )

    def held_message(self, count: int, reason: str, *, lost: bool) -> str:
        """The line for ``count`` events neither a daemon nor the spool took: ``lost`` once the
        sender closes (its thread stops; nothing will send them), else held in memory."""
        exc = self.unwritable
        they = _they(count, "could")
        spool = f"{they} not be spooled to {self._path()} ({exc})" if exc is not None else (
            f"{they} not be moved to the spool file in time"
        )
        if lost:
            return f"{events(count, 'are lost')}: {reason}, and {spool}."
        return (
            f"{events(count, 'were not delivered')}: {reason}, and {spool}; {_they(count, 'are')} held in memory, "
            f"and {'is' if count == 1 else 'are'} lost if this process exits."
        )

    def moving_message(self, count: int, reason: str, *, final: bool, exiting: bool) -> str:
        """The line for ``count`` events the sender thread was still writing to the spool file
        (taken by a spill under way) when a bounded flush stopped waiting: the disk is slow, not
        gone. ``exiting``: the thread dies with the process; a write it began leaves its whole
        frames in the file, which are delivered (a torn last one is left out), the rest is lost.
        ``final``: the sender closes, and its thread ends once the spill does. Otherwise they
        follow the others to the spool file; a write that fails keeps them in memory (said then)."""
        path = self._path() or spool_file(self._config.spool_dir, self._client_id)  # its first write: not made yet
        they, where = _they(count, "were"), f"the spool file {path}"
        delivered = f"delivered when a daemon answers, or by `trackd sync` on {_HOST}"
        head = f"{events(count, 'were not delivered')}: {reason}; {they} still being written to {where}"
        if exiting:
            return f"{head} as this process exited: those whose write completed are {delivered}; the rest are lost."
        if final:
            return f"{head} when close() stopped waiting: if the write completes {_they(count, 'are')} {delivered}, else lost."
        return f"{head} when this flush stopped waiting, and {'is' if count == 1 else 'are'} {delivered} once written."

    def unwritable_error(self, reason: BaseException, exc: OSError, held: int) -> DaemonUnavailable:
        """What a flush gets when the spool file cannot be written and ``held`` events stay in memory."""
        return DaemonUnavailable(
            f"No trackd daemon answers ({reason}) and events cannot be spooled to {self._path()} ({exc}); "
            f"{events(held, 'are held')} in memory and sent when a daemon answers."
        )

    def warn_unwritable(self, exc: OSError, held: int) -> None:
        """Say once per outage that the spool file cannot be written, so ``held`` events wait in memory."""
        if not self.held_said:
            self.held_said = True
            warn(
                f"could not spool events to {self._path()}: {exc}; holding {events(held)} in memory, "
                f"lost if this process exits before a daemon answers."
            )

    def _path(self) -> Path | None:
        return self._spool.path if self._spool is not None else None


def _they(count: int, verb: str) -> str:
    """The pronoun for ``count`` events, with ``verb`` agreeing: "1 event ...; it is spooled"."""
    if count != 1:
        return f"they {verb}"
    return f"it {'is' if verb == 'are' else verb}"


def _unreadable(lost: int, path: Path, exc: Exception) -> str:
    """The sentence flush() reports for ``lost`` spooled records the file could not give back."""
    return f"{events(lost, 'spooled to')} {path} could not be read back ({exc}) and are lost"
