"""State the daemon's parts share: client sessions and counters.

A session outlives its connection: a client that reconnects (after a network hiccup or a daemon
that closed it) finds its sequence numbers here, so batches it resends are not written twice.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._connection import ClientConnection

# Rates in ``trackd daemon status`` are averaged over this window.
RATE_WINDOW = 10.0


@dataclass(slots=True, eq=False)
class Session:
    """What the daemon knows of one client process, across its connections."""

    client_id: str
    pid: int
    host: str
    store_root: str
    # Highest batch accepted into the batcher, and highest batch written to the store.
    received_seq: int = 0
    applied_seq: int = 0
    connection: ClientConnection | None = None
    disconnected_at: float | None = None
    # Flush barriers waiting for their batches: (request_id, seq that must be written first).
    flushes: list[tuple[int, int]] = field(default_factory=list)
    rejected: int = 0
    # Events the client's on-full policy dropped, as it last reported.
    dropped: int = 0
    # When it last sent a flush barrier (time.monotonic()), for Server.others_waiting.
    last_flush_at: float = float("-inf")
    # Times its connection's reads were paused for its decode budget, and for how long in all.
    throttled: int = 0
    throttled_s: float = 0.0

    def __repr__(self) -> str:
        return f"<Session {self.client_id} pid {self.pid}@{self.host}>"


@dataclass(slots=True)
class Counters:
    """Totals since the daemon started."""

    connections: int = 0
    # Turned away at connect: another uid, or over max_connections.
    connections_refused: int = 0
    records_received: int = 0
    bytes_received: int = 0
    records_written: int = 0
    metric_points_written: int = 0
    writes: int = 0
    items_rejected: int = 0
    protocol_errors: int = 0
    write_errors: int = 0
    # Pauses of a connection's reads for its decode budget (max_events_per_second).
    throttled: int = 0


@dataclass(slots=True)
class ServerState:
    """Shared state: sessions, live connections, tasks and counters."""

    started_at: float = field(default_factory=time.time)
    sessions: dict[str, Session] = field(default_factory=dict)
    connections: set[ClientConnection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Sessions with flush barriers waiting or sent lately (Server.others_waiting); pruned once a second.
    flushing: set[Session] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)
    # (monotonic time, records received, records written), sampled for rates.
    samples: collections.deque[tuple[float, int, int]] = field(
        default_factory=lambda: collections.deque(maxlen=int(RATE_WINDOW) + 1)
    )
    # One line per kind of failure, with how often it happened: shown by status, logged once.
    error_kinds: dict[str, int] = field(default_factory=dict)

    def sample(self, now: float) -> None:
        """Record the counters at ``now`` (called about once a second)."""
        self.samples.append((now, self.counters.records_received, self.counters.records_written))

    def rates(self) -> tuple[float, float]:
        """Records received and written per second over the last RATE_WINDOW seconds."""
        if len(self.samples) < 2:
            return 0.0, 0.0
        (t0, r0, w0), (t1, r1, w1) = self.samples[0], self.samples[-1]
        span = max(t1 - t0, 1e-9)
        return (r1 - r0) / span, (w1 - w0) / span
