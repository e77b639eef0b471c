"""Artifacts sent by path: copied on threads of their own before their batches are written.

The daemon writes every store on one thread. A file over the inline limit (a checkpoint of a
few GB) used to be copied inside a write: every other client's points and flushes waited for it
(~5 s for 2 GB), and a longer stall filled their windows and buffers until their logging calls
blocked. Now the applier hands such a batch back (``ApplyResult.copies``). It waits here with
its client's later batches while ``COPY_THREADS`` threads copy its files into the store's staging
area (``trackd.store.ArtifactCopy``), then goes back in front of the batcher. Its write renames
the copies into place, so an Ack, a FlushDone and the journal still mean that the batch, its
artifacts included, is in the store, and nothing is acknowledged that a daemon crash could lose.
Only that client waits for the copy, as it did before, and its order holds: an end_run it sent
after the artifact is written after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol import ARTIFACT
from ..store import ArtifactCopy

if TYPE_CHECKING:
    from ._batcher import PendingBatch
    from ._state import Session

# Copies made at once. More than one, so one client's 2 GB checkpoint does not hold another's
# artifact for its whole length; a few, because copies on one disk share its bandwidth.
COPY_THREADS = 4
# How long shutdown waits for copier threads to finish the chunk under way (64 MiB) before it
# removes what they staged: a thread mid-copy left a partial copy of gigabytes behind.
COPY_STOP_SECONDS = 2.0
# Copies listed one by one in a status reply.
MAX_STATUS_COPIES = 32


class Copies:
    """Per client, the batches waiting for artifacts to be copied; and the threads copying them.

    Every method runs on the event loop, except what the copier threads run (``_work``).
    ``release`` gets a client's batches, in order, once nothing they wait for is being copied.
    """

    def __init__(self, release: Callable[[list[PendingBatch]], None]) -> None:
        self._release = release
        self._waiting: dict[Session, list[PendingBatch]] = {}
        # Copies queued or under way, with the client they are for.
        self._copying: dict[ArtifactCopy, Session] = {}
        # Every copy whose batch is alive: what shutdown removes (a placed copy has nothing left).
        self._made: weakref.WeakSet[ArtifactCopy] = weakref.WeakSet()
        self._jobs: queue.SimpleQueue[tuple[ArtifactCopy, Session] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set while some client's batches wait here: the heartbeats sleep on it, not on a timer.
        self._busy = asyncio.Event()
        # What waits here in all: the backlog counts it, and its own bound stops its clients' reads.
        self.events = 0
        self.size = 0

    def __contains__(self, session: object) -> bool:
        return session in self._waiting

    def waiting(self) -> list[tuple[Session, int]]:
        """The clients whose batches wait for a copy now, each with its first such batch's seq."""
        return [(session, batches[0].seq) for session, batches in self._waiting.items() if batches]

    async def until_waiting(self) -> None:
        """Return once some client's batches wait for a copy (at once if they do now)."""
        await self._busy.wait()

    def hold(self, batches: list[PendingBatch]) -> list[PendingBatch]:
        """The batches to write now; those of a client waiting for a copy join its queue, in order.

        A batch older than the first one its client holds here was released already (its copy
        done while a later one's is not): it goes to the write. Queued behind the later batch it
        waited for that copy too, and was then written after it.
        """
        if not self._waiting:
            return batches
        write = []
        for batch in batches:
            waiting = self._waiting.get(batch.session)
            if waiting is None or batch.seq < waiting[0].seq:
                write.append(batch)
            else:
                self._queue(waiting, batch)
        return write

    def start(self, batches: list[PendingBatch]) -> None:
        """Copy what ``batches`` (a write's ``ApplyResult.copies``) send by path; each client's wait, in order."""
        if not batches:
            return
        self._loop = asyncio.get_running_loop()
        while len(self._threads) < COPY_THREADS:
            thread = threading.Thread(target=self._work, name=f"trackd-copier-{len(self._threads) + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for batch in batches:
            if batch.copies is None:
                root = batch.session.store_root
                batch.copies = {
                    id(record): ArtifactCopy(
                        root, record[1], record[2], record[4], record[5] if len(record) > 5 else None,
                        record[6] if len(record) > 6 else None,
                    )
                    for record in batch.records
                    if record[0] == ARTIFACT and record[4] is not None
                }
                self._made.update(batch.copies.values())
            for copy in batch.copies.values():
                if copy.needed and copy not in self._copying:
                    self._copying[copy] = batch.session
                    self._jobs.put((copy, batch.session))
            self._queue(self._waiting.setdefault(batch.session, []), batch)
        self._busy.set()

    def stop(self) -> None:
        """Shutdown: copies stop at their next chunk and nothing more is released; their batches stay unwritten."""
        self._stop.set()
        for _ in self._threads:
            self._jobs.put(None)

    def join(self, timeout: float) -> None:
        """After stop(): wait up to ``timeout`` seconds in all for the copier threads to finish their
        chunk, so that discard_all() finds what they staged (one stuck in open() is left to exit
        with the process: it has staged nothing)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def discard_all(self) -> None:
        """Remove every staged copy no write placed (after the writer stopped and join())."""
        for copy in list(self._made):
            copy.discard()

    def status(self) -> list[dict[str, object]]:
        """The copies under way or queued, for ``trackd daemon status``."""
        return [
            {"source": copy.source_path, "bytes": copy.size, "copied": copy.copied, "pid": session.pid}
            for copy, session in list(self._copying.items())[:MAX_STATUS_COPIES]
        ]

    @property
    def copying(self) -> int:
        """How many copies are queued or under way."""
        return len(self._copying)

    def _queue(self, waiting: list[PendingBatch], batch: PendingBatch) -> None:
        # In the client's order: a released batch that must be copied again (its copy failed with
        # the disk full) comes back while its client's later batches still wait here.
        index = len(waiting)
        while index and waiting[index - 1].seq > batch.seq:
            index -= 1
        waiting.insert(index, batch)
        self.events += batch.events
        self.size += batch.size

    def _work(self) -> None:
        """A copier thread: copy what is queued, and tell the loop each time one is done."""
        while (job := self._jobs.get()) is not None:
            copy, session = job
            if self._stop.is_set():
                continue
            if not copy.run(self._stop):
                continue  # the daemon is stopping: the batch stays unwritten, and shutdown counts it
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed: the daemon has exited
                    loop.call_soon_threadsafe(self._copied, copy, session)

    def _copied(self, copy: ArtifactCopy, session: Session) -> None:
        """On the loop: ``copy`` is made (or failed); release the client's batches that wait for nothing now."""
        del self._copying[copy]
        waiting = self._waiting.get(session)
        if self._stop.is_set() or waiting is None:
            return
        released = []
        while waiting and not any(c in self._copying for c in (waiting[0].copies or {}).values()):
            batch = waiting.pop(0)
            self.events -= batch.events
            self.size -= batch.size
            released.append(batch)
        if not waiting:
            del self._waiting[session]
            if not self._waiting:
                self._busy.clear()
        if released:
            self._release(released)
