"""Last wills: runs whose process exited without ending them are marked FAILED.

A training process killed by SIGKILL (the OOM killer, a scheduler) runs no exit hook, and its
runs stayed RUNNING for ever, which MLflow shows as a live run. The daemon holds each client's
connection and the kernel tells it the client's pid, so each client sends the runs it owns
(``OwnedRuns``, as an MQTT client leaves a last will) and, once its connection has ended, the
daemon fails those still RUNNING when all of these hold:

- the process is gone: ``kill(pid, 0)`` fails with ESRCH, it is a zombie, or a process with
  another start time (``/proc/<pid>/stat`` field 22) has its pid now;
- everything the client sent is written (the end of a run may be among it);
- its spool file does not exist, or is empty: a spool holds batches not delivered yet, perhaps a
  run's end, until ``trackd sync`` or another client delivers it (an empty one, which a read-only
  spool folder leaves, holds nothing).

A will the store refuses (disk full, read-only) is tried again, after a backoff, until it takes it.

A process that never reached a daemon (none ran, or none could start) told none its runs: its
spool file names them (``SpooledWill`` frames, with its pid and start time), and the delivery of
that file (``trackd sync``, another client) tells them after its batches (``spooled``). That will
is a pending one from then on, watching the process that wrote the file, not the one delivering it.

A client that reconnects from the same process takes its pending will over until it sends its set again;
``trackd sync`` delivering a dead client's spool connects with its client id from another process
and neither drops nor applies it. Every will the daemon knows, those of live connections too, is
kept in a file beside the socket (``_wills_file.py``), rewritten soon after each change and
journaled at once (before the connection's next message is read); a daemon
that stops gracefully applies, after its last write, the wills whose time has come and leaves the
others there (``settle``). The next daemon, started after a stop, a SIGKILL or a crash, takes them
all on (``restore``): a will whose process still runs waits for it to reconnect (which drops it)
or to exit, as a pending will does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._peer import peer_pid, process_exited, process_state
from .._words import counted
from ..errors import StoreUnavailable, TrackdError
from ..protocol import MAX_OWNED_RUNS, OwnedRuns, SpooledWill, is_run_id
from ..store import validate_store_root
from ..store._entities import FAILURE_REASON_TAG
from ._state import Session
from ._will_budget import MAX_WILL_RUN_IDS, RunIdBudget, listed
from ._will_spool import spooled
from ._wills_file import Row, WillsFile

if TYPE_CHECKING:
    from ._applier import Applier
    from ._server import Server

logger = logging.getLogger("trackd.daemon")
T = TypeVar("T")

# Pending wills kept at once (a few hundred bytes each); past this the oldest is dropped, logged
# (also of those a wills file holds at start).
# A machine runs tens of training processes; only processes that exit without ending their runs,
# or close their client with runs still open, leave one, and it goes once the process has exited.
MAX_PENDING_WILLS = 10_000
# A will the store refused (disk full, read-only: see guarantee 5) is tried again after this long,
# doubling up to the maximum while it keeps refusing; shutdown tries once more, then leaves it to
# the next daemon.
RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 60.0
# A pid the kernel can have (pid_t); a will read back from the file with another is damaged.
MAX_PID = 2**31 - 1


@dataclass(slots=True, eq=False)
class Will:
    """One connection's owned runs, and the process to watch for them."""

    session: Session
    # The peer as the kernel reported it (SO_PEERCRED), not Hello.pid, the client's word.
    pid: int
    # Its start time in clock ticks since boot (Linux), to tell it from a later process with its pid.
    started: int | None
    run_ids: tuple[str, ...] = ()
    spool_path: str = ""
    # Wall-clock time the connection ended (ms): the failed runs' end_time; for a will of a live
    # connection the last daemon left, the time this daemon found its process gone.
    lost_at_ms: int = 0
    # Known gone: its process was seen exited (its pid may be another process's now).
    gone: bool = False
    # After the store refused it: when to try again (time.monotonic()), and the backoff.
    retry_at: float = 0.0
    retry_delay: float = 0.0


def watch(session: Session, sock: socket.socket | None) -> Will | None:
    """A will for the process at the other end of ``sock``; None if it cannot be watched (the
    kernel cannot tell its pid, or reports 0: another pid namespace)."""
    pid = peer_pid(sock) if sock is not None else None
    if not pid:
        return None
    return Will(session, pid, process_state(pid)[1])


def exited(will: Will) -> bool:
    """Whether the will's process is gone (a zombie is: it runs no more code)."""
    return will.gone or process_exited(will.pid, will.started)


class Wills:
    """Pending wills, by client id: they outlive the session being forgotten."""

    def __init__(self) -> None:
        self._pending: dict[str, Will] = {}
        # Runs marked FAILED since the daemon started (status: runs_failed_for_exited_clients).
        self.runs_failed = 0
        # What the run ids of all wills together may cost (MAX_WILL_RUN_IDS); it counts those refused.
        self.budget = RunIdBudget()
        # Whether a pending will's process still runs: the daemon does not exit idle meanwhile.
        self.watching = False
        # Pending wills whose process has exited, waiting for its batches to be written, its
        # spool to be delivered or its store to take writes again (as the last check found them).
        self.waiting = 0
        # Wills taken off the list and being applied in the writer thread: still pending in status
        # until their runs are written (a test read "none pending" and then the run still RUNNING),
        # and in the file until applied (a daemon killed meanwhile leaves them to the next).
        self._being_applied: set[Will] = set()
        # Their tasks: shutdown waits for them (cancelled, one not yet in the writer thread was lost).
        self._applying: set[asyncio.Future[None]] = set()
        # The wills of open connections that own runs: in the file too, for the next daemon.
        self._live: set[Will] = set()
        self._file: WillsFile | None = None  # from restore(), at startup
        # The wills shutdown left in the file for the next daemon (settle); None until then.
        self.left_to_next: set[Will] | None = None

    def update(self, will: Will, event: OwnedRuns) -> None:
        """A connection's latest set: it replaces the last one (its newest runs only, past MAX_WILL_RUN_IDS)."""
        will.run_ids = self.budget.fit(event.run_ids, self._held(will), f"process {will.pid}")
        will.spool_path = event.spool_path
        if will.run_ids:
            self._live.add(will)
        else:
            self._live.discard(will)
        self._changed(will.session.client_id)

    def left(self, will: Will | None) -> None:
        """A connection ended: its will waits for its process to go."""
        if will is None:
            return
        self._live.discard(will)  # one with runs only: pending next, which _add_pending journals
        if not will.run_ids:
            return
        will.lost_at_ms = int(time.time() * 1000)
        self._add_pending(will)

    def spooled(self, session: Session, event: SpooledWill, *, watched: bool) -> None:
        """A delivery of ``session``'s spool file tells the runs it names: pending, watching the
        process that wrote the file (``watched``: this connection's peer is in the daemon's pid
        namespace, so that pid is one the daemon can look at).

        Added to a pending will of that process (its connection's, before a daemon was lost): the
        file may be older than what its connection told last (a process killed as it resent it),
        and a run ended since is not RUNNING by the time the will is applied.
        """
        if not event.run_ids:
            return
        runs = listed(event.run_ids)
        if not watched or event.host != session.host:
            where = f"on {event.host or 'another host'}" if event.host != session.host else "in another pid namespace"
            logger.info(
                "Spool %s names runs %s its process %d %s had not ended: not watched from here, they stay as they are",
                event.spool_path, runs, event.pid, where,
            )
            return
        will = Will(session, event.pid, event.started, event.run_ids, event.spool_path, event.seen_ms)
        before = self._pending.get(session.client_id)
        if before is not None and before.pid == event.pid:
            will.run_ids = tuple({**dict.fromkeys(before.run_ids), **dict.fromkeys(event.run_ids)})[-MAX_OWNED_RUNS:]
            will.lost_at_ms = max(before.lost_at_ms, event.seen_ms)
            will.started = before.started if before.started is not None else event.started
            will.gone = before.gone
        # In place of that client's pending will, whichever process it watches (_add_pending).
        will.run_ids = self.budget.fit(will.run_ids, self._held(self._pending.get(session.client_id)), f"process {event.pid}")
        # Said as the frame arrives, before the spool's batches are written: "its process had not
        # ended" them was said of a run whose end the spool held, written FINISHED. What the check
        # does is said when it is done (_fail_runs).
        logger.info(
            "Spool %s names runs %s, which its process %d owned as it spooled: checked once that process has "
            "exited and the spool is written and gone, and marked FAILED if still RUNNING", event.spool_path, runs, event.pid,
        )
        self._add_pending(will)

    def _add_pending(self, will: Will) -> None:
        """Make ``will`` its client's pending will, the newest; past the cap the oldest goes."""
        pending = self._pending
        pending.pop(will.session.client_id, None)  # to the newest end
        pending[will.session.client_id] = will
        self.watching = True
        changed = [will.session.client_id]
        if len(pending) > MAX_PENDING_WILLS:
            oldest = pending.pop(next(iter(pending)))
            changed.append(oldest.session.client_id)
            logger.warning(
                "More than %d clients left runs to fail if their process exits; forgot the oldest: "
                "process %d's runs %s stay as they are", MAX_PENDING_WILLS, oldest.pid, listed(oldest.run_ids),
            )
        self._changed(*changed)

    def reconnected(self, client_id: str, will: Will | None) -> None:
        """A connection from ``client_id``, watched by ``will``: the same process back takes its
        pending will over, until it tells its set again; another process (``trackd sync``) leaves
        it as it is.

        Dropped at once, the will left the runs RUNNING for ever if the process died before its
        ``OwnedRuns`` came, which it sends after everything it resends: a process whose daemon was
        killed or restarted, killed while it resent what the last daemon had not written.
        """
        pending = self._pending.get(client_id)
        if pending is None or will is None or pending.pid != will.pid:
            return
        del self._pending[client_id]
        if pending.run_ids and not will.run_ids:
            will.run_ids, will.spool_path = pending.run_ids, pending.spool_path
            self._live.add(will)
        self._changed(client_id)

    def other_owners(self, root: str, run_id: str, client_id: str) -> list[int]:
        """The pids of the live processes other than client ``client_id`` whose will names
        ``run_id`` of the store at ``root``: a connected client's (``_live``), or a pending one whose
        process runs (as ``_leave_to_live_owners`` counts them). A shared end of the run is a detach then.

        Called on the writer thread: it reads copies (tuple() of a set or a dict's values is made
        under the GIL at once, and a will's run_ids is a tuple replaced whole).
        """
        wills = [*tuple(self._live), *(will for will in tuple(self._pending.values()) if not exited(will))]
        return sorted({
            will.pid for will in wills
            if will.session.client_id != client_id and will.session.store_root == root and run_id in will.run_ids
        })

    def check(self, server: Server) -> None:
        """Once a second: apply, in the writer thread, the wills whose time has come."""
        for will in self._take_due(server):
            self._start(server, will)

    def _start(self, server: Server, will: Will) -> None:
        # Kept in the server's tasks (a strong reference), and in ours: shutdown waits for them.
        task = asyncio.ensure_future(self._apply(server, will))
        for tasks in (server.state.tasks, self._applying):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def settle(self, server: Server) -> None:
        """Shutdown, after its last write: apply the wills whose time has come, and leave the rest to the next daemon.

        Stopped with them in memory, the daemon left those runs RUNNING for ever: the next daemon
        never hears of a process that has exited. The pending wills are those of connections that
        ended before this, those of exited processes read to their end by shutdown included. The
        others stay in the file the next daemon reads (``restore``): those that must still wait, for
        a process that runs or for a spool on disk (it may hold the runs' end), and those of live
        connections, which shutdown cuts next, a process that exited since shutdown stopped reading
        its connection included (its runs' end, if in what was not read, is lost with it: the next
        daemon fails them). Dropped, each of those left its runs RUNNING for ever. One whose last
        batches could not be written is dropped, said in the log.
        """
        for will in self._take_due(server, retry_now=True):  # a store that refused may take it now
            self._start(server, will)
        if self._applying:
            # Behind a write still running at the deadline, if any: bounded as that wait is.
            _, late = await asyncio.wait(set(self._applying), timeout=server.config.shutdown_timeout)
            if late:  # cancelled with the other tasks next
                logger.error(
                    "Shutdown: the runs of %s could not be marked FAILED in time: left to the next daemon",
                    counted(len(late), "exited process"),
                )
        kept = list(self._being_applied)  # those late ones: a run failed meanwhile is left as it is
        for will in [*self._pending.values(), *self._live]:
            if exited(will) and will.session.applied_seq < will.session.received_seq:
                logger.error(
                    "Shutdown: process %d exited owning runs %s, left RUNNING: its last batches could not be written",
                    will.pid, listed(will.run_ids),
                )
            else:
                kept.append(will)  # one whose process runs may yet exit without reconnecting
        gone = [will for will in kept if not will.gone and exited(will)]
        now_ms = int(time.time() * 1000)
        for will in gone:
            will.gone = True
            will.lost_at_ms = will.lost_at_ms or now_ms  # a live connection's: its failed runs' end time
        if gone:  # journaled, as every change: the journal must read as the file close() writes
            self._changed(*(will.session.client_id for will in gone))
        self.left_to_next = set(kept)  # said in one line by close()
        if self._file is not None:
            await self._file.close(_rows(kept))

    def restore(self, path: Path, journal: Path) -> None:
        """Startup: take on the wills the last daemon left in ``path``, with the changes it
        appended to ``journal`` since it last wrote it, and keep this daemon's there from now on."""
        self._file = WillsFile(path, journal, lambda: _rows([*self._pending.values(), *self._being_applied, *self._live]))
        lines, damaged = self._file.read()
        first, forgotten = "", 0
        pending = self._pending
        for line in filter(str.strip, lines):
            try:
                will = _decode(json.loads(line))
            except Exception as exc:  # whatever the file holds, the daemon starts: one line says so
                damaged += 1
                first = first or f"{type(exc).__name__}: {exc}; {line[:200]!r}"
                continue
            pending.pop(will.session.client_id, None)
            pending[will.session.client_id] = will
        # Each line: a client's will as it was then, or none; the newest goes last.
        changes, torn, first_torn = self._file.read_journal()
        for client_id, item in changes:
            pending.pop(client_id, None)
            try:
                if item is not None:
                    pending[client_id] = _decode(item)
            except Exception as exc:
                torn += 1
                first_torn = first_torn or f"{type(exc).__name__}: {exc}; {str(item)[:200]!r}"
        read = len(pending)
        held = named = sum(len(will.run_ids) for will in pending.values())
        # Past the caps, the oldest go, as in left(): the file lists the pending wills oldest first,
        # then those of the last daemon's live connections (processes perhaps killed across the
        # restart), and the journal's are newer. The newest were dropped, without a word. A file an
        # older daemon wrote may hold more run ids than this one keeps (it kept them unbounded).
        while len(pending) > MAX_PENDING_WILLS or held > MAX_WILL_RUN_IDS:
            held -= len(pending.pop(next(iter(pending))).run_ids)
            forgotten += 1
        if torn:
            logger.warning(
                "Ignored %s in %s, the changes of the wills the last daemon appended (the first: %s; a daemon "
                "killed as it appended leaves a part of one)", counted(torn, "damaged line"), journal, first_torn,
            )
        if damaged:
            logger.error(
                "Ignored %s in %s, the wills the last daemon left (the first: %s); the runs they "
                "named are not failed if their process exited", counted(damaged, "damaged line"), path, first or "not UTF-8 text",
            )
        if forgotten:
            too_many = (
                f"more than the {MAX_PENDING_WILLS} a daemon keeps" if read > MAX_PENDING_WILLS
                else f"naming {named:,} run ids, more than the {MAX_WILL_RUN_IDS:,} a daemon keeps (MAX_WILL_RUN_IDS)"
            )
            logger.warning(
                "%s holds %d wills, %s; forgot the %d oldest: the runs they name stay as they are (not failed if their "
                "process exited)", path, read, too_many, forgotten,
            )
        if damaged or forgotten or changes or torn:
            self._file.rewrite()  # now: the file holds the journal's changes, and without the damaged wills
        if self._pending:
            self.watching = True  # until the first check looks
            logger.info("Took on %s the last daemon left (%s)", counted(len(self._pending), "will"), path)

    def _changed(self, *client_ids: str) -> None:
        """These clients' wills changed: journaled at once, in the file soon."""
        if self._file is not None:
            self._file.changed([(client_id, self._row_of(client_id)) for client_id in client_ids])

    def _row_of(self, client_id: str) -> Row | None:
        """The client's will as the file holds it (as ``_rows`` picks it), or None if it has none."""
        will = self._pending.get(client_id) or next(
            (will for wills in (self._being_applied, self._live) for will in wills if will.session.client_id == client_id), None
        )
        return None if will is None else _rows([will])[0]

    def _take_due(self, server: Server, *, retry_now: bool = False) -> list[Will]:
        """Take off the list the wills whose time has come, less the runs a live process owns too."""
        due, watching, waiting = [], False, 0
        live: list[Will] = [conn.will for conn in server.state.connections if conn.will is not None]
        now = time.monotonic()
        for client_id, will in list(self._pending.items()):
            if not exited(will):
                watching = True
                live.append(will)
                continue
            if not will.gone:  # a reused pid no longer passes for it; written to the file
                will.gone = True
                will.lost_at_ms = will.lost_at_ms or int(time.time() * 1000)  # a live connection's, the last daemon left
                self._changed(client_id)
            if (
                will.session.applied_seq < will.session.received_seq or spooled(will.spool_path)
                or (will.retry_at > now and not retry_now)
            ):
                waiting += 1
            else:
                due.append(will := self._pending.pop(client_id))
                self._being_applied.add(will)
        self.watching = watching or bool(due)  # and not idle while their runs are failed
        self.waiting = waiting
        if due:
            _leave_to_live_owners(due, live)
        return due

    async def _apply(self, server: Server, will: Will) -> None:
        applier = server.applier
        try:
            failed, refused = await server.run_in_writer(_fail_runs(applier, will))
        except (OSError, StoreUnavailable) as exc:  # the store could not be opened: tried again
            failed, refused = [], list(will.run_ids)
            _log_refusal(will, listed(will.run_ids), exc)
        except Exception:  # a bug: logged, never the daemon's end
            logger.exception("Could not fail the runs %s of exited process %d", listed(will.run_ids), will.pid)
            failed, refused = [], []
        finally:
            self._being_applied.discard(will)
        self.runs_failed += len(failed)
        will.session.runs_failed += len(failed)
        if refused:
            self._retry_later(will, refused)
        self._changed(will.session.client_id)  # applied, or pending again

    def _retry_later(self, will: Will, run_ids: list[str]) -> None:
        """The store refused to fail ``run_ids`` (disk full, read-only): pending again, tried after a backoff.

        Logged and dropped, the will left those runs RUNNING for ever, though the daemon keeps
        every event a refusing store holds back and writes it once the store takes writes again.
        """
        will.run_ids = tuple(run_ids)
        will.retry_delay = min(max(will.retry_delay * 2, RETRY_DELAY), MAX_RETRY_DELAY)
        will.retry_at = time.monotonic() + will.retry_delay
        client_id = will.session.client_id
        if client_id not in self._pending and len(self._pending) < MAX_PENDING_WILLS:
            self._pending[client_id] = will
            self.waiting += 1  # until the next check counts it
        else:
            logger.error("Could not keep the will of exited process %d: runs %s stay RUNNING", will.pid, listed(run_ids))

    def status(self) -> dict[str, object]:
        """Its counters in ``trackd daemon status``."""
        return {
            "runs_failed_for_exited_clients": self.runs_failed,
            # Clients whose connection ended owning runs; of them, those whose process has exited
            # and whose batches wait to be written or whose spool waits for `trackd sync`.
            "wills_pending": len(self._pending) + len(self._being_applied),
            "wills_waiting": self.waiting,
            # Run ids of wills refused past MAX_WILL_RUN_IDS: not failed if their process is killed.
            "will_runs_refused": self.budget.refused,
            # Runs the connected clients own (started, not ended), each counted once however many
            # ranks own it: what is RUNNING because a process still runs it, as this daemon knows.
            "runs_open": len({(will.session.store_root, run_id) for will in tuple(self._live) for run_id in will.run_ids}),
        }

    def _held(self, instead: Will | None) -> int:
        """How many run ids the wills hold, but ``instead``'s (a will about to be replaced).

        Counted anew at each change, as wills change in many places; an OwnedRuns or SpooledWill is
        rare (a run's start or end), and ~11,000 wills at most are summed in about a millisecond.
        """
        wills = {id(will): will for wills in (self._pending.values(), self._being_applied, self._live) for will in wills}
        return sum(len(will.run_ids) for will in wills.values() if will is not instead)


def _rows(wills: list[Will]) -> list[Row]:
    """The wills as the file holds them, one per client (``_decode`` reads them back)."""
    rows: dict[str, Row] = {}
    for will in wills:
        rows.setdefault(will.session.client_id, {
            "client_id": will.session.client_id, "pid": will.pid, "started": will.started, "gone": will.gone,
            "host": will.session.host, "store_root": will.session.store_root, "run_ids": list(will.run_ids),
            "spool_path": will.spool_path, "lost_at_ms": will.lost_at_ms,
        })
    return list(rows.values())


def _decode(item: object) -> Will:
    """A will ``_rows`` wrote, read back as JSON; ValueError or TypeError if it is not one."""
    if not isinstance(item, dict):
        raise TypeError(f"a will is a JSON object, not {type(item).__name__}")
    pid, started, run_ids = _field(item, "pid", int), item["started"], _field(item, "run_ids", list)
    if not 0 < pid <= MAX_PID:
        raise ValueError(f"pid {pid} is not a process id")
    if started is not None and (not isinstance(started, int) or isinstance(started, bool)):
        raise TypeError(f"started is {started!r}, expected a whole number or null")
    if not all(isinstance(run_id, str) for run_id in run_ids):
        raise TypeError(f"run_ids is {str(run_ids)[:200]}, expected a list of strings")
    if len(run_ids) > MAX_OWNED_RUNS or not all(map(is_run_id, run_ids)):  # as OwnedRuns takes them
        raise ValueError(f"run_ids holds {len(run_ids)} items, expected at most {MAX_OWNED_RUNS} run ids the store takes")
    # Checked as a client's Hello is: the daemon writes there.
    store_root = validate_store_root(_field(item, "store_root", str))
    session = Session(_field(item, "client_id", str), pid, _field(item, "host", str), store_root)
    return Will(
        session, pid, started, tuple(run_ids), _field(item, "spool_path", str), _field(item, "lost_at_ms", int),
        gone=_field(item, "gone", bool),
    )


def _field(item: dict[str, object], key: str, kind: type[T]) -> T:
    value = item[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TypeError(f"{key} is {value!r}, expected {kind.__name__}")
    return value


def _leave_to_live_owners(due: list[Will], live: list[Will]) -> None:
    """Take out of the ``due`` wills the runs a live process owns too: that process ends them.

    torchrun restarting a job whose rank 0 was SIGKILLed starts a new rank 0, which attaches to the
    shared run and owns it: failing the run under it, the old rank 0's will made the job end FAILED
    (the new owner's end_run keeps a failure another process set). Live: a connected client, or a
    pending will whose process runs. A new owner whose ``OwnedRuns`` has not arrived yet (it is sent
    after the batch that attached) is not seen.
    """
    owned = {(will.session.store_root, run_id) for will in live for run_id in will.run_ids}
    for will in due:
        root = will.session.store_root
        kept = [run_id for run_id in will.run_ids if (root, run_id) in owned]
        if kept:
            will.run_ids = tuple(run_id for run_id in will.run_ids if (root, run_id) not in owned)
            logger.info(
                "Process %d exited owning runs %s, which a live process owns too: left to it", will.pid, listed(kept)
            )


def _log_refusal(will: Will, run_ids: str, exc: BaseException) -> None:
    """Say once per will that the store refused to fail its runs; the retries are quiet."""
    if will.retry_delay == 0.0:
        logger.error("Could not mark runs %s of exited process %d FAILED yet (retrying until the store takes writes): %s", run_ids, will.pid, exc)


def _fail_runs(applier: Applier, will: Will) -> Callable[[], tuple[list[str], list[str]]]:
    """Writer thread: fail the will's runs still RUNNING; return those it failed, and those the
    store refused to write (tried again later)."""
    session = will.session

    def work() -> tuple[list[str], list[str]]:
        writer = applier.writer(session.store_root, session.artifact_root)
        reason = (
            f"process {will.pid} on {session.host or 'this host'} exited without ending the run (it was killed, "
            "e.g. by SIGKILL or the OOM killer, or crashed)"
        )
        failed, refused, ended = [], [], []  # ended: not RUNNING, left alone
        for run_id in will.run_ids:
            try:
                marked = writer.fail_running_run(run_id, will.lost_at_ms, {FAILURE_REASON_TAG: reason})
            except (OSError, StoreUnavailable) as exc:  # the disk's refusal, not the run's: may pass
                refused.append(run_id)
                _log_refusal(will, run_id, exc)
                continue
            except TrackdError as exc:  # the run's own (a corrupt meta.yaml): trying again would not help
                logger.error("Could not mark run %s FAILED after %s: %s", run_id, reason, exc)
                continue
            if marked:
                failed.append(run_id)
                logger.warning("Marked run %s FAILED in %s: %s", run_id, session.store_root, reason)
            else:
                ended.append(run_id)
        if ended:
            # The end of a run a spool names is often in that spool: said, the line above ends the story.
            logger.info(
                "Process %d has exited: its runs %s are not RUNNING in the store (ended, deleted or never written): "
                "left as they are", will.pid, listed(ended),
            )
        return failed, refused

    return work
