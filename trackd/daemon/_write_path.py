"""The daemon's write path, a base of ``Server``: batches in, written in order on the writer thread.

Connections hand their clients' batches in (``accept_batch``, waiting while the backlog is over
its bound) and their flush barriers (``flush``); the write loop takes what the batcher says is due,
holds what waits for a copy or for a store that refuses writes, and has the writer thread write
the rest, in turns while flushes come and others are connected (``_write_in_turns``); then it
acknowledges what was written (``deliver``). Every store operation runs on that one thread, in
order with the writes (``run_in_writer``). ``Server`` owns the lifecycle that starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._words import counted
from ..protocol import Ack, Batch, FlushDone
from ._acks import deliver
from ._applier import ApplyResult, Failure
from ._batcher import DECODED_SIZE_FACTOR, RECORD_SIZE_ESTIMATE, WRITE_TURN_RECORDS, PendingBatch, turns

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ._applier import Applier
    from ._batcher import Batcher
    from ._config import DaemonConfig
    from ._connection import ClientConnection
    from ._copies import Copies
    from ._outages import Outages
    from ._state import ServerState, Session

logger = logging.getLogger("trackd.daemon")
T = TypeVar("T")

# A client that sent a flush barrier this recently still counts as waiting on the daemon, so a
# neighbour over its decode budget stays paused (ClientConnection._within_budget). A client that
# flushes in a loop spends part of each cycle logging between flushes: counting only the barriers
# pending let the flooder back in during those gaps, and each flush then found a flooder frame
# being decoded and a flooder write under way (bench_fairness flood p50 8-14 ms in 3 runs; 1.3-7.4
# ms, median 3 ms, in 8 runs counting 0.1 s). 0.1 s covers a flush loop, not a client that flushes
# once a second, whose fast neighbours should not be held to their budget for it.
FLUSH_RECENCY = 0.1
# After a flush barrier, writes go in turns (Batcher turns) for this long: clients that flush once
# tend to flush again (a loop of log-then-flush, reads after writes).
TURNS_AFTER_FLUSH = 1.0


class WritePath:
    """The write path of ``Server`` (its base): accepting batches and flushes, and writing them."""

    config: DaemonConfig
    state: ServerState
    batcher: Batcher
    applier: Applier
    outages: Outages
    copies: Copies
    _executor: ThreadPoolExecutor
    _wake: asyncio.Event
    _room: asyncio.Event
    _writing: int  # events of the write under way
    _writing_bytes: int  # and their estimated bytes
    _flush_arrived: bool  # set on the loop when a flush barrier arrives, read by the writer thread between turns
    _last_flush_at: float

    async def accept_batch(self, session: Session, batch: Batch, frame_size: int = 0) -> None:
        """Queue a client's batch for writing, waiting while the backlog is over its bound.

        The backlog counts what a batch takes in memory once decoded, estimated from its frame
        (see DECODED_SIZE_FACTOR): counting events alone let an inline artifact (one event, up to
        8 MiB) slip past the bound, and counting wire bytes let decoded records take ~5x the bound.
        What stores refusing writes hold has a bound of its own, so their clients wait for room
        there while other stores' clients go on.
        """
        while self._backlog_full(session):
            self._room.clear()
            self._wake.set()
            await self._room.wait()
        if batch.seq <= session.received_seq:
            # A resend after a reconnect: it is queued or written already and must not be written twice.
            # (Its number names it; on one connection a number goes only up, see Connection._check_batch_order.)
            if batch.seq <= session.applied_seq and session.connection is not None:
                session.connection.send(Ack(seq=session.applied_seq))
            return
        session.received_seq = batch.seq
        self.state.counters.records_received += batch.events
        session.received(batch.events, self.state.samples[-1][0])
        size = max(batch.events * RECORD_SIZE_ESTIMATE, frame_size * DECODED_SIZE_FACTOR)
        now = time.monotonic()
        # The write loop sleeps without a deadline while nothing is pending, so the first batch
        # must wake it to start the max_age clock, as must one that makes a write due.
        idle = self.batcher.delay(now) is None
        if self.batcher.add(PendingBatch(session, batch.seq, batch.records, batch.events, size), now) or idle:
            self._wake.set()

    def flush(self, session: Session, request_id: int) -> None:
        """Answer a flush barrier once everything the session sent before it is written."""
        session.last_flush_at = time.monotonic()
        self.state.flushing.add(session)
        if session.received_seq <= session.applied_seq:
            if session.connection is not None:
                session.connection.send(FlushDone(request_id=request_id, acked_seq=session.applied_seq))
            return
        session.flushes.append((request_id, session.received_seq))
        self._flush_arrived = True
        self._last_flush_at = session.last_flush_at
        self.batcher.request_write()
        self._wake.set()

    def others_waiting(self, conn: ClientConnection) -> bool:
        """Whether a client other than ``conn``'s is connected and waits on a flush, or flushed lately."""
        now = time.monotonic()
        return any(
            s.connection is not None and s.connection is not conn and (s.flushes or now - s.last_flush_at < FLUSH_RECENCY)
            and s.store_root not in self.outages  # its flush waits for its store, not for this reader
            and s not in self.copies  # or for its artifact's copy
            for s in self.state.flushing
        )

    async def run_in_writer(self, work: Callable[[], T]) -> T:
        """Run store work on the writer thread, in order with the writes."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            if due := self.outages.due(now):
                # A store that refused writes has waited out its backoff: its batches go in front
                # again, and the write that takes them tells whether it accepts writes now.
                self.batcher.requeue(due, now)
                self._room.set()
            delay = _sooner(self.batcher.delay(now), self.outages.next_retry(now))
            if delay is None or delay > 0:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            # A client waiting for a copy keeps its order: its batches wait behind the copy first.
            pending = self.outages.hold(self.copies.hold(self.batcher.take(now, self.outages)))
            self._room.set()
            if not pending:
                continue
            self._writing, self._writing_bytes = sum(item.events for item in pending), sum(item.size for item in pending)
            self._flush_arrived = False
            parts = turns(pending, WRITE_TURN_RECORDS) if self._flushes_likely() else [pending]
            try:
                result, unwritten = await loop.run_in_executor(self._executor, self._write_in_turns, parts)
            except Exception as exc:  # a bug in the applier must not stop the daemon
                logger.exception("Writing %s failed", counted(len(pending), "batch"))
                result, unwritten = ApplyResult(records=self._writing), []
                self._fail_all(pending, result, f"The daemon failed while writing this batch: {exc!r}.")
            finally:
                self._writing = self._writing_bytes = 0
            now = time.monotonic()
            if result.refused:
                self.outages.refuse(result.refused, result.retry, now)
            # In front of everything newer, so each client's order holds; a refusing store's
            # batches among them join its outage at the next take, after the refused ones.
            self.batcher.requeue(unwritten, now)
            # Those of a store that just refused wait for it, after its refused ones, and are
            # copied for when they go again.
            self.copies.start(self.outages.hold(result.copies))
            if result.retry or unwritten or result.copies:
                held_ids = set(map(id, result.retry + unwritten + result.copies))
                pending = [item for item in pending if id(item) not in held_ids]
            self.state.writes_resumed(self.outages.recovered(pending, now), now)
            deliver(self.state, pending, result)
            snapshot = {**self.state.retired, **{s.client_id: s.applied_seq for s in self.state.sessions.values()}}
            try:
                await loop.run_in_executor(self._executor, self.applier.compact_journal, snapshot)
            except Exception:  # a full disk here must not end the write loop; compaction retries next write
                logger.exception("Could not compact the write journal")
            # Not kept while the loop waits for the next write: the batches written (their decoded
            # records, ~330 bytes an event) stayed referenced from here until it began, ~22 MB of a
            # 65,536-event write kept by an idle daemon, and one write's more at the next one's peak.
            del pending, parts, result, unwritten

    def _flushes_likely(self) -> bool:
        """Whether to write in turns: a flush barrier came lately and someone else is connected.

        Turns cost a write() per metric file each, so points spread over many files lose
        throughput (10,000 files: 0.26x of the 10-file rate with 4,096-record writes, 0.37x with
        16,384). Alone, or while nobody flushes, a write goes whole; a client's first flush after
        a quiet spell may wait for one whole write.
        """
        recent = time.monotonic() - self._last_flush_at < TURNS_AFTER_FLUSH
        return recent and len(self.state.connections) > 1

    def _write_in_turns(self, parts: list[list[PendingBatch]]) -> tuple[ApplyResult, list[PendingBatch]]:
        """Writer thread: write ``parts`` one turn at a time; return what was done and the batches not written.

        It stops early after a turn when a flush barrier has arrived (the flushing client's batches
        then get the next write) or when a store refused a turn (a client's later batches must not
        be written before its earlier ones).
        """
        result = ApplyResult()
        copying: dict[Session, int] = {}  # a client's batches from the first to copy for on wait, in every turn
        for index, part in enumerate(parts):
            if index and (self._flush_arrived or result.retry):
                return result, [batch for rest in parts[index:] for batch in rest]
            done = self.applier.apply(part, copying)
            result.copies.extend(done.copies)
            result.records += done.records
            result.metric_points += done.metric_points
            result.failures.extend(done.failures)
            result.store_errors.extend(done.store_errors)
            result.retry.extend(done.retry)
            result.refused.update(done.refused)
        return result, []

    def _backlog_full(self, session: Session) -> bool:
        """Whether a batch from ``session`` must wait for room in the daemon's backlog."""
        if session in self.copies:
            held = self.copies.size
        elif session.store_root in self.outages:
            held = self.outages.size
        else:
            held = self.batcher.pending_bytes
        return held >= self.config.max_backlog_bytes

    def _backlog_records(self) -> int:
        """Events received and not written yet: waiting, being written, held for a refusing store or for a copy."""
        return self.batcher.pending_records + self._writing + self.outages.events + self.copies.events

    def _copied(self, batches: list[PendingBatch]) -> None:
        """A client's batches wait for no copy any more: in front of the batcher, ahead of its later ones.

        Behind its earlier ones still waiting there: two copies finishing within max_age of each
        other put the second one's batch in front of the first one's, which was written after it.
        """
        self.batcher.requeue_in_order(batches, time.monotonic())
        if any(batch.session.flushes for batch in batches):
            self.batcher.request_write()
        self._room.set()
        self._wake.set()

    def _fail_all(self, pending: list[PendingBatch], result: ApplyResult, message: str) -> None:
        result.store_errors.append(message)
        result.failures.extend(Failure(item.session, item.seq, "batch", message, item.events) for item in pending)


def _sooner(a: float | None, b: float | None) -> float | None:
    """The sooner of two delays, either of which may be None (nothing to wait for)."""
    return b if a is None else a if b is None else min(a, b)
