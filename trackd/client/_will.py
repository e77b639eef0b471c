"""The runs a client owns: what the daemon fails if this process exits without ending them.

A process killed by SIGKILL (the OOM killer, a scheduler) runs no exit hook, and its runs stayed
RUNNING for ever. The daemon sees the process go (it holds its connection and knows its pid), so
the client tells it, as an MQTT client leaves a "last will", which runs to fail then: the fluent
API's runs this process owns (``start_run`` adds one, its end removes it). ``trackd.Client``'s
runs are not here: like MlflowClient's, their status is the caller's to set.

The set changes on the caller's side and is read by the sender thread, which tells it as
``OwnedRuns``: a run added, before the batches that create it (``ahead_news``: ``start_run`` adds
the run before it queues its creation or its RUNNING again), and a run removed, after the batches
logged before its end (``news``: ``end_run`` queues the end before it removes the run), so the
daemon holds every run it has written for this process, and drops none before its end arrives
(see ``SenderThread._send_buffer``). On a new connection it goes right after the Hello, before
the daemon's Welcome and before anything is resent (``handshake``'s ``owned``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..protocol import MAX_OWNED_RUNS, OwnedRuns
from ._spool import spool_file


class Will:
    """This client's owned runs, and what its connection last told the daemon of them."""

    def __init__(self, spool_dir: Path, client_id: str, *, on_add: Callable[[], object] | None = None) -> None:
        # Wakes the sender thread: a run added while it waits for a daemon's answer to its Hello
        # is told at once (see ahead_news), not at the wait's next check.
        self._on_add = on_add
        # A dict for its order: past MAX_OWNED_RUNS, the newest runs are the ones sent.
        self._runs: dict[str, None] = {}
        # The set the daemon holds for this client: the last one told, on this connection or, until
        # it is told again (_retell), on the one before (the daemon takes that will over).
        self._told: tuple[str, ...] = ()
        # A new connection, after one that was told runs: told again, also if the client owns none now.
        self._retell = False
        # Absolute: the daemon looks for it, in its own working folder.
        self.spool_path = os.path.abspath(spool_file(spool_dir, client_id))

    def add(self, run_id: str) -> None:
        """This process owns ``run_id`` now (before its creation, or its RUNNING again, is queued)."""
        self._runs[run_id] = None
        if self._on_add is not None:
            self._on_add()

    def discard(self, run_id: str) -> None:
        """This process ended ``run_id`` (after its end was queued), or never owned it."""
        self._runs.pop(run_id, None)

    def clear(self) -> None:
        """The client closes: its runs, if any are still open, are another client's to end now
        (ActiveRun.open_client adds them to the one it opens), so this connection fails none."""
        self._runs.clear()

    def snapshot(self) -> tuple[str, ...]:
        """The owned runs now; read by the sender thread with each chunk it takes from the buffer."""
        # copy() runs in C under the GIL: a caller adding a run meanwhile cannot break the read.
        return tuple(self._runs.copy())

    @property
    def told(self) -> tuple[str, ...]:
        """The runs the last set told names: every run whose creation was sent on a connection, but
        those whose end was sent before (see ahead_news and news)."""
        return self._told

    def connected(self) -> None:
        """A new connection (before its Hello): the daemon knows this client's runs only from an
        earlier connection, if it told any (a pending will, or one the last daemon left): told
        again, also if none now."""
        self._retell = bool(self._told)

    def untold(self) -> bool:
        """Whether the set now differs from the last one told. (Not whether a new connection has
        been told: a handshake does that first. An attempt that failed before it, no daemon
        answering, made an idle process start one, and ``trackd daemon stop`` could not stop it.)"""
        return self.snapshot() != self._told

    def ahead_news(self, snapshot: tuple[str, ...] | None = None) -> OwnedRuns | None:
        """The event that tells the daemon the runs of ``snapshot`` (the set now by default) it may
        not hold, with every run it may hold; None if it holds them all already.

        Sent before the batches that create those runs. It only adds to what the daemon holds: a
        run removed since the last set told stays, as its end may still be on its way (``news``
        drops it once it is sent). A run named before its ``CREATE_RUN`` that never arrives (the
        process was killed between the two writes) is missing, and the daemon leaves a missing
        run alone. Told after the batches, as it was, a process killed between the batch that
        created its run and the set (the sender thread waits for the GIL there, up to the 5 ms
        switch interval of a busy main thread) left the run RUNNING for ever, with its data.
        """
        if snapshot is None:
            snapshot = self.snapshot()
        held = set(self._told)
        if not self._retell and held.issuperset(snapshot):
            return None
        owned = set(snapshot)
        return self._tell(tuple(run for run in self._told if run not in owned) + snapshot)

    def news(self, snapshot: tuple[str, ...]) -> OwnedRuns | None:
        """The event that tells the daemon exactly ``snapshot``, or None if it holds it already;
        sent once every batch queued before ``snapshot`` was read is sent."""
        if snapshot == self._told and not self._retell:
            return None
        return self._tell(snapshot)

    def _tell(self, run_ids: tuple[str, ...]) -> OwnedRuns:
        # Made first: an event its checks refuse is not taken as told (every later handshake would
        # tell it again, and fail again).
        event = OwnedRuns(run_ids=run_ids[-MAX_OWNED_RUNS:], spool_path=self.spool_path)
        self._told, self._retell = run_ids, False
        return event
