"""The runs a client owns: what the daemon fails if this process exits without ending them.

A process killed by SIGKILL (the OOM killer, a scheduler) runs no exit hook, and its runs stayed
RUNNING for ever. The daemon sees the process go (it holds its connection and knows its pid), so
the client tells it, as an MQTT client leaves a "last will", which runs to fail then: the fluent
API's runs this process owns (``start_run`` adds one, its end removes it). ``trackd.Client``'s
runs are not here: like MlflowClient's, their status is the caller's to set.

The set changes on the caller's side and is read by the sender thread, which sends it as
``OwnedRuns`` after the batches logged before the change (see ``SenderThread._send_buffer``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..protocol import MAX_OWNED_RUNS, OwnedRuns
from ._spool import spool_file


class Will:
    """This client's owned runs, and what its connection last told the daemon of them."""

    def __init__(self, spool_dir: Path, client_id: str) -> None:
        # A dict for its order: past MAX_OWNED_RUNS, the newest runs are the ones sent.
        self._runs: dict[str, None] = {}
        # None: unknown, told on the next connection whatever it is (see connected).
        self._told: tuple[str, ...] | None = ()
        # Absolute: the daemon looks for it, in its own working folder.
        self.spool_path = os.path.abspath(spool_file(spool_dir, client_id))

    def add(self, run_id: str) -> None:
        """This process owns ``run_id`` now (after its creation was queued)."""
        self._runs[run_id] = None

    def discard(self, run_id: str) -> None:
        """This process ended ``run_id`` (after its end was queued), or never owned it."""
        self._runs.pop(run_id, None)

    def clear(self) -> None:
        """The client closes: its runs, if any are still open, are another client's to end now
        (ActiveRun.open_client adds them to the one it opens), so this connection fails none."""
        self._runs.clear()

    def snapshot(self) -> tuple[str, ...]:
        """The owned runs now; read by the sender thread before it takes the buffer."""
        # copy() runs in C under the GIL: a caller adding a run meanwhile cannot break the read.
        return tuple(self._runs.copy())

    def connected(self) -> None:
        """A new connection: the daemon knows this client's runs only from an earlier connection,
        if it told any (a pending will, or one the last daemon left): told again, also if none now."""
        self._told = () if self._told == () else None

    def untold(self) -> bool:
        """Whether the daemon's copy on this connection differs from the set now."""
        return self.snapshot() != self._told

    def news(self, snapshot: tuple[str, ...]) -> OwnedRuns | None:
        """The event that tells the daemon ``snapshot``, or None if it knows it already."""
        if snapshot == self._told:
            return None
        self._told = snapshot
        return OwnedRuns(run_ids=snapshot[-MAX_OWNED_RUNS:], spool_path=self.spool_path)
