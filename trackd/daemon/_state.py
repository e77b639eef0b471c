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

from ._identities import UNKNOWN, Identity
from ._partial_frames import PartialFrames

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._connection import ClientConnection

# Rates in ``trackd daemon status`` are averaged over this window, up to the moment of the request.
RATE_WINDOW = 10.0
# Samples kept for it, one a second, the oldest at its start.
RATE_SAMPLES = int(RATE_WINDOW) + 1
# The shortest span a client's rate is over, however recently it connected: one sample interval.
# A process that sends its spool file as it connects would show millions of events per second.
MIN_CLIENT_RATE_SPAN = 1.0
# How long a disconnected client's sequence numbers are kept for a reconnect.
SESSION_TTL = 300.0
# Most sessions kept at once; the oldest finished ones beyond it are forgotten before SESSION_TTL.
MAX_KEPT_SESSIONS = 10_000
# Forgotten clients whose batches were written keep their highest written batch number (in
# ServerState.retired and the journal's snapshots), so a spool file delivered hours later (`trackd
# sync`, or the next client delivering an exited process's spool) is not written twice: its first
# batches may be ones the daemon wrote after the client had given it up. The oldest go past this
# many (~150 bytes each in memory, ~45 in a snapshot).
MAX_RETIRED_CLIENTS = 20_000
# Clients listed one by one in a status reply (all are counted in clients_known).
MAX_STATUS_CLIENTS = 256
# Kinds of store errors status lists; the rest are counted together.
MAX_ERROR_KINDS = 100
OTHER_ERRORS = "other kinds of errors (past the first 100)"


@dataclass(slots=True)
class ErrorTimes:
    """When a kind of error last happened and, for a store's refusal of writes, whether it has ended."""

    last_at: float  # time.monotonic()
    # The stores refusing writes with this kind now (an outage each); when the last of them took a
    # write again (None while one refuses, or for a kind no store's outage has).
    refusing: set[str] = field(default_factory=set)
    resumed_at: float | None = None

    def status(self, now: float) -> dict[str, object]:
        """``last_s_ago`` and, for a store's refusal, ``refusing`` (stores still refusing) and, once none is, ``resumed_s_ago``."""
        shown: dict[str, object] = {"last_s_ago": round(now - self.last_at, 3)}
        if self.refusing or self.resumed_at is not None:
            shown["refusing"] = len(self.refusing)
        if self.resumed_at is not None:
            shown["resumed_s_ago"] = round(now - self.resumed_at, 3)
        return shown


@dataclass(slots=True, eq=False)
class Session:
    """What the daemon knows of one client process, across its connections."""

    client_id: str
    pid: int
    host: str
    store_root: str
    # The URI its new experiments go under (store.check_artifact_root, from its Hello).
    artifact_root: str | None = None
    # Highest batch accepted into the batcher, and highest batch written to the store.
    received_seq: int = 0
    applied_seq: int = 0
    connection: ClientConnection | None = None
    disconnected_at: float | None = None
    # Flush barriers waiting for their batches: (request_id, seq that must be written first).
    flushes: list[tuple[int, int]] = field(default_factory=list)
    rejected: int = 0
    # Its refused items named in the log after it disconnected (see _acks.GONE_REFUSALS_LOGGED).
    gone_refusals_logged: int = 0
    # Events the client's on-full policy dropped, as it last reported.
    dropped: int = 0
    # When it last sent a flush barrier (time.monotonic()), for Server.others_waiting.
    last_flush_at: float = float("-inf")
    # Times its connection's reads were paused for its decode budget, and for how long in all.
    throttled: int = 0
    throttled_s: float = 0.0
    # Events it sent (counted per batch, never per event) and those of them not written yet, for
    # its rate and backlog in status.
    events_received: int = 0
    backlog_events: int = 0
    # (sample time, events_received) at each of ServerState.samples' times since it last sent in the
    # rate window; None while it has sent nothing for a whole window, so an idle client costs nothing.
    rate_samples: collections.deque[tuple[float, int]] | None = None
    # When it first connected to this daemon (time.monotonic()): its rate is over no longer than since.
    connected_at: float = field(default_factory=time.monotonic)
    # Its process's command, RANK, LOCAL_RANK and parent, once read from /proc (_identities.py).
    identity: Identity | None = None
    # Its runs this daemon marked FAILED after its process exited without ending them (Wills._apply).
    runs_failed: int = 0

    def __repr__(self) -> str:
        return f"<Session {self.client_id} pid {self.pid}@{self.host}>"

    @property
    def finished(self) -> bool:
        """Disconnected with everything it sent written: nothing is lost by forgetting it."""
        return self.connection is None and self.applied_seq >= self.received_seq

    def received(self, events: int, last_sample_at: float) -> None:
        """Count a batch of ``events`` it sent; ``last_sample_at``: the time of the latest rate sample."""
        if self.rate_samples is None:
            # Its count then was what it is before this batch, and it did not change in the window before.
            self.rate_samples = collections.deque([(last_sample_at, self.events_received)], maxlen=RATE_SAMPLES)
        self.events_received += events
        self.backlog_events += events

    def sample(self, now: float) -> None:
        """Record its count at ``now``, with ServerState's sample; forget the samples once a whole window is flat."""
        samples = self.rate_samples
        if samples is None:
            return
        samples.append((now, self.events_received))
        if len(samples) == RATE_SAMPLES and samples[0][1] == self.events_received:
            self.rate_samples = None

    def rate(self, span: float, now: float) -> float:
        """Events per second it sent over the rate window of ``span`` seconds up to ``now``, or
        since it connected if that is shorter.

        The window starts at ServerState.samples[0], which is at or before this session's first
        sample: between the two it sent nothing (it did not exist, or its samples had been dropped
        for a flat window), so its count at the window's start is its first sample's. Averaged over
        the whole window, a client that connected within it was under-reported for the window's
        length: logging 3,000 events/s, it showed 983/s 3.5 s after it connected.
        """
        samples = self.rate_samples
        return 0.0 if samples is None else (self.events_received - samples[0][1]) / self.rate_span(span, now)

    def rate_span(self, span: float, now: float) -> float:
        """The seconds its rate is over: the rate window's ``span`` up to ``now``, or since it connected if shorter."""
        return min(span, max(now - self.connected_at, MIN_CLIENT_RATE_SPAN))

    def status(self, span: float, now: float) -> dict[str, object]:
        """Its entry in ``trackd daemon status``; ``span``: the rate window's length up to ``now``, in seconds."""
        connected = self.connection is not None
        return {
            # What `trackd daemon status` matches a spool file's Hello by (see spool_census).
            "client_id": self.client_id,
            "pid": self.pid,
            "host": self.host,
            # What tells it from the job's other processes (None where /proc did not say).
            **(self.identity or UNKNOWN).status(),
            "store": self.store_root,
            "connected": connected,
            "received_seq": self.received_seq,
            "written_seq": self.applied_seq,
            # Named as the totals are. Over the same window, or since it connected (rate_span_s):
            # each rate times its span, summed over the clients, is receive_rate times the window's
            # (docs/configuration.md). None for a client that left: a rate beside "gone" read as
            # one still sending.
            "records_received": self.events_received,
            "receive_rate": round(self.rate(span, now), 1) if connected else None,
            "rate_span_s": round(self.rate_span(span, now), 3) if connected else None,
            "backlog_records": max(self.backlog_events, 0),
            "rejected": self.rejected,
            "dropped": self.dropped,
            "throttled": self.throttled,
            "throttled_s": round(self.throttled_s, 3),
            # Runs its connection said it owns: failed if its process exits without ending them.
            "owned_runs": len(will.run_ids) if self.connection is not None and (will := self.connection.will) else 0,
            # Of them, those this daemon marked FAILED once its process had exited: status said "gone"
            # of a SIGKILLed job, and nothing of its run.
            "runs_failed": self.runs_failed,
        }


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
    events_rejected: int = 0
    protocol_errors: int = 0
    write_errors: int = 0
    # Pauses of a connection's reads for its decode budget (max_events_per_second).
    throttled: int = 0


@dataclass(slots=True)
class ServerState:
    """Shared state: sessions, live connections, tasks and counters."""

    # Monotonic: the wall clock may be stepped (NTP, a resumed VM); uptime and SESSION_TTL are durations.
    started_at: float = field(default_factory=time.monotonic)
    sessions: dict[str, Session] = field(default_factory=dict)
    connections: set[ClientConnection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Sessions with flush barriers waiting or sent lately (Server.others_waiting); pruned once a second.
    flushing: set[Session] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)
    # What connections hold of frames not whole yet, bounded for the daemon (_partial_frames.py).
    partial_frames: PartialFrames = field(default_factory=PartialFrames)
    # (monotonic time, records received, records written), sampled for rates; the first is the
    # start, so a daemon younger than a sample interval has rates too.
    samples: collections.deque[tuple[float, int, int]] = field(
        default_factory=lambda: collections.deque([(time.monotonic(), 0, 0)], maxlen=RATE_SAMPLES)
    )
    # One line per kind of failure, with how often it happened: shown by status, logged once.
    # At most MAX_ERROR_KINDS (a kind names its store: a daemon failing on thousands of stores
    # would make a status reply no client accepts); the rest are counted under OTHER_ERRORS.
    error_kinds: dict[str, int] = field(default_factory=dict)
    # When each of those last happened, and whether a store's refusal has ended (status shows both).
    error_times: dict[str, ErrorTimes] = field(default_factory=dict)
    # Peers refused at the handshake, and why, or disconnected for a kind of protocol error: each
    # is logged once (see ClientConnection._refuse, _first_of_kind, Server._on_connect).
    refused: set[str] = field(default_factory=set)
    # Highest batch written per client id of clients no session holds (forgotten, or recovered from
    # the journal), oldest first: see MAX_RETIRED_CLIENTS.
    retired: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str, *, store: str | None = None) -> bool:
        """Count one failure of ``kind``, now; True the first time it is seen (to log it).

        ``store``: the root of the store that refused writes with it, whose outage ``writes_resumed`` ends.
        """
        kinds = self.error_kinds
        if kind not in kinds and len(kinds) >= MAX_ERROR_KINDS:
            kind = OTHER_ERRORS
        first = kind not in kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        now = time.monotonic()
        times = self.error_times.get(kind)
        if times is None:
            times = self.error_times[kind] = ErrorTimes(now)
        times.last_at = now
        if store is not None:
            times.refusing.add(store)
            times.resumed_at = None
        return first

    def writes_resumed(self, stores: Iterable[str], now: float) -> None:
        """The ``stores`` took a write again: their refusals end, and a kind none refuses with any more is marked resumed."""
        for store in stores:
            for times in self.error_times.values():
                if store in times.refusing:
                    times.refusing.discard(store)
                    if not times.refusing:
                        times.resumed_at = now

    def errors_status(self, now: float) -> dict[str, dict[str, object]]:
        """``error_times`` for a status reply, by kind as ``error_kinds``."""
        return {kind: times.status(now) for kind, times in self.error_times.items()}

    def note_refusal(self, peer: str, reason: str) -> bool:
        """Count one handshake refused for ``reason``; True the first time ``peer`` is refused for it (to log it)."""
        self.count_error(f"Refused clients: {reason}")
        return self.first_refusal(f"{peer}: {reason}")

    def first_refusal(self, entry: str) -> bool:
        """True the first time ``entry`` (who was refused or disconnected, and why) is seen, so that it is logged once."""
        refused = self.refused
        if entry in refused:
            return False
        if len(refused) >= MAX_KEPT_SESSIONS:
            refused.clear()  # bounded: a peer refused again after this is logged again
        refused.add(entry)
        return True

    def sample(self, now: float) -> None:
        """Record the counters at ``now`` (called about once a second), the totals' and each sending client's."""
        self.samples.append((now, self.counters.records_received, self.counters.records_written))
        for session in self.sessions.values():
            session.sample(now)

    def forget_sessions(self, now: float) -> None:
        """Forget finished sessions gone for SESSION_TTL, and the oldest beyond MAX_KEPT_SESSIONS.

        A session is kept a while after its connection closes, so a reconnecting client is not
        written twice. A client inventing a client id per connection must not grow the daemon for
        SESSION_TTL, so past MAX_KEPT_SESSIONS the oldest finished ones go now. Either way its
        highest written batch is kept (``retire``): a client, or its spool, coming back later
        resumes after it.
        """
        sessions = self.sessions
        for client_id, session in list(sessions.items()):
            gone = session.disconnected_at
            if gone is not None and now - gone > SESSION_TTL and session.finished:
                del sessions[client_id]
                self.retire(client_id, session.applied_seq)
        excess = len(sessions) - MAX_KEPT_SESSIONS
        for client_id, session in list(sessions.items()):
            if excess <= 0:
                break
            if session.finished:
                del sessions[client_id]
                self.retire(client_id, session.applied_seq)
                excess -= 1

    def retire(self, client_id: str, written_seq: int) -> None:
        """Remember ``client_id``'s highest written batch after its session is gone (see MAX_RETIRED_CLIENTS)."""
        if written_seq <= 0:
            return  # nothing of it written: nothing a later delivery could write twice
        retired = self.retired
        retired.pop(client_id, None)  # to the newest end
        retired[client_id] = written_seq
        if len(retired) > MAX_RETIRED_CLIENTS:
            del retired[next(iter(retired))]

    def listed_sessions(self) -> list[Session]:
        """The sessions a status reply lists: connected ones first, then the latest to leave, at
        most MAX_STATUS_CLIENTS. A client that invents a client id per connection (the fuzz test
        does) leaves thousands of sessions, and listing them all made the reply larger than
        MAX_FRAME_SIZE, so `trackd daemon status` got no answer."""
        sessions = list(self.sessions.values())
        connected = [s for s in sessions if s.connection is not None]
        gone = [s for s in reversed(sessions) if s.connection is None]
        return (connected + gone)[:MAX_STATUS_CLIENTS]

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """Records received and written per second from the oldest sample (RATE_WINDOW seconds ago,
        or the start) up to ``now`` (default: this moment), with the counters as they are now.

        Up to ``now``, not to the last sample: that is up to a second old, and status right after
        a burst said 0.0 events/s (or the rate of the second before it).
        """
        span = self.rate_span(now)
        _, r0, w0 = self.samples[0]
        counters = self.counters
        return (counters.records_received - r0) / span, (counters.records_written - w0) / span

    def rate_span(self, now: float | None = None) -> float:
        """Seconds from the oldest rate sample (RATE_WINDOW seconds ago, or the start) up to ``now`` (default: this moment)."""
        now = time.monotonic() if now is None else now
        return max(now - self.samples[0][0], 1e-3)
