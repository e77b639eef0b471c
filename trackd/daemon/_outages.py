"""Stores that refuse writes (disk full, read-only, I/O errors): their batches wait apart and go again.

A refusal belongs to one store. Its batches are held here, out of the batcher, and put back in
front of it once the store's backoff has passed; every other store's batches are written as usual
meanwhile. The daemon logs once per store and kind of refusal that it failed and once that it
recovered, and tells only the clients whose events a store holds, with their own count. With one
backoff for the whole daemon, a full disk under one project made every other project's flushes
wait out the backoff (a few ms became 0.4 to 10 s each), each write to another store was logged
as the full one's recovery, and every client was told of the full store, with its count.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._words import counted
from ..protocol import ErrorCode, ErrorReply, store_unavailable_message

if TYPE_CHECKING:
    from ._batcher import PendingBatch
    from ._state import Session

logger = logging.getLogger("trackd.daemon")

# After a store refused a write, wait this long before trying it again, doubling up to the
# maximum while it keeps refusing.
RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0


@dataclass(slots=True, eq=False)
class Outage:
    """One store refusing writes: the batches it holds back, and when they go again."""

    root: str
    # The first refusal's message: what failed, why and where.
    reason: str
    started_at: float
    # None while its batches are back in the batcher for a try: the write that takes them ends
    # the outage, or starts the next wait.
    retry_at: float | None = None
    delay: float = 0.0
    batches: list[PendingBatch] = field(default_factory=list)
    # Kinds of refusal already logged, and clients already told: each once per outage.
    kinds: set[str] = field(default_factory=set)
    told: set[Session] = field(default_factory=set)
    # Clients not told yet, with how many of their events it holds (told once connected).
    untold: dict[Session, int] = field(default_factory=dict)


class Outages:
    """Every store refusing writes now, by root, and what they hold back."""

    def __init__(self) -> None:
        self._by_root: dict[str, Outage] = {}
        # What all outages hold together: stores that refuse writes share one backlog bound.
        self.events = 0
        self.size = 0

    def __contains__(self, root: object) -> bool:
        return root in self._by_root

    def refuse(self, refused: Mapping[str, str], batches: list[PendingBatch], now: float) -> None:
        """The stores in ``refused`` (root -> why) refused ``batches``: hold them and back off.

        Every batch belongs to one of those stores. A new kind of refusal is logged, once, and
        clients are told.
        """
        for root, reason in refused.items():
            outage = self._by_root.get(root)
            if outage is None:
                outage = self._by_root[root] = Outage(root, reason, now)
            outage.delay = min(max(outage.delay * 2, RETRY_DELAY), MAX_RETRY_DELAY)
            outage.retry_at = now + outage.delay
        for batch in batches:
            self._hold(self._by_root[batch.session.store_root], batch)
        for root, reason in refused.items():
            outage = self._by_root[root]
            # The text before the colon is the kind, as in the daemon's status (ServerState.error_kinds).
            kind = reason.split(":")[0]
            if kind not in outage.kinds:
                outage.kinds.add(kind)
                logger.error(
                    "%s %s for the store at %s wait, and are written when it accepts writes again.",
                    reason, counted(sum(b.events for b in outage.batches), "event"), root,
                )
        self._tell()

    def hold(self, batches: list[PendingBatch]) -> list[PendingBatch]:
        """The batches to write now; those of a store waiting out its backoff join its outage.

        A held batch goes after what its outage holds already, so each client's order holds. A
        client whose events wait for the first time in this outage is told.
        """
        if not self._by_root:
            return batches
        write = []
        for batch in batches:
            outage = self._by_root.get(batch.session.store_root)
            if outage is None or outage.retry_at is None:
                write.append(batch)
            else:
                self._hold(outage, batch)
        self._tell()
        return write

    def due(self, now: float) -> list[PendingBatch]:
        """The held batches of every store whose backoff has passed, to be tried again."""
        batches: list[PendingBatch] = []
        for outage in self._by_root.values():
            if outage.retry_at is not None and outage.retry_at <= now:
                batches += outage.batches
                outage.batches = []
                outage.untold.clear()  # counted again if held again
                outage.retry_at = None
        self.events -= sum(batch.events for batch in batches)
        self.size -= sum(batch.size for batch in batches)
        return batches

    def next_retry(self, now: float) -> float | None:
        """Seconds until the next store is tried again; None if no store waits."""
        times = [outage.retry_at for outage in self._by_root.values() if outage.retry_at is not None]
        return max(0.0, min(times) - now) if times else None

    def recovered(self, written: list[PendingBatch], now: float) -> list[str]:
        """End the outages of the stores that have just taken a write of ``written``; their roots."""
        ended: list[str] = []
        if not self._by_root:
            return ended
        for root in {batch.session.store_root for batch in written}:
            outage = self._by_root.get(root)
            if outage is not None and outage.retry_at is None:
                del self._by_root[root]
                ended.append(root)
                logger.info("The store at %s accepts writes again after %.1f s; resuming", root, now - outage.started_at)
        return ended

    def reconnected(self, session: Session) -> None:
        """``session`` is back on a new connection, which has heard nothing: it is told again, at
        its events' next retry, if they still wait. A second `trackd sync` of a spool for a full
        store heard nothing, waited its whole timeout and said the daemon "did not confirm"."""
        for outage in self._by_root.values():
            outage.told.discard(session)

    def _hold(self, outage: Outage, batch: PendingBatch) -> None:
        outage.batches.append(batch)
        self.events += batch.events
        self.size += batch.size
        if batch.session not in outage.told:
            outage.untold[batch.session] = outage.untold.get(batch.session, 0) + batch.events

    def _tell(self) -> None:
        """Tell each connected client with events held, once per outage, how many of its events wait."""
        for outage in self._by_root.values():
            for session, events in list(outage.untold.items()):
                if session.connection is None:
                    continue  # told if it reconnects while its events still wait
                del outage.untold[session]
                outage.told.add(session)
                session.connection.send(ErrorReply(
                    request_id=0, code=ErrorCode.STORE_UNAVAILABLE, message=store_unavailable_message(outage.reason, events),
                ))
