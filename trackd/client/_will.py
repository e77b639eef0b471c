"""The runs a client owns: what the daemon fails if this process exits without ending them.

A process killed by SIGKILL (the OOM killer, a scheduler) runs no exit hook, and its runs stayed
RUNNING for ever. The daemon sees the process go (it holds its connection and knows its pid), so
the client tells it, as an MQTT client leaves a "last will", which runs to fail then: the fluent
API's runs this process owns (``start_run`` adds one, its end removes it). ``trackd.Client``'s
runs are not here: like MlflowClient's, their status is the caller's to set.

The set changes on the caller's side and is read by the sender thread, which sends it as
``OwnedRuns`` after the batches logged before the change (see ``SenderThread._send_buffer``),
except on the first connection that tells any, where it goes before the daemon's Welcome
(``first_news``).
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
        # is told at once (see first_news), not at the wait's next check.
        self._on_add = on_add
        # A dict for its order: past MAX_OWNED_RUNS, the newest runs are the ones sent.
        self._runs: dict[str, None] = {}
        # None: unknown, told on the next connection whatever it is (see connected).
        self._told: tuple[str, ...] | None = ()
        # Absolute: the daemon looks for it, in its own working folder.
        self.spool_path = os.path.abspath(spool_file(spool_dir, client_id))

    def add(self, run_id: str) -> None:
        """This process owns ``run_id`` now (after its creation was queued)."""
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
        """The owned runs now; read by the sender thread before it takes the buffer."""
        # copy() runs in C under the GIL: a caller adding a run meanwhile cannot break the read.
        return tuple(self._runs.copy())

    def connected(self) -> None:
        """A new connection: the daemon knows this client's runs only from an earlier connection,
        if it told any (a pending will, or one the last daemon left): told again, also if none now."""
        self._told = () if self._told == () else None

    def first_news(self) -> OwnedRuns | None:
        """The event that tells a daemon this client's runs before it has answered the Hello, or None.

        Only while no daemon was ever told any (a will a daemon holds from an earlier connection
        is replaced after the batches that connection resends, see ``connected``), and only when
        the client owns runs. A rank 0 SIGKILLed while its daemon was stopped had sent nothing but
        its Hello, and the shared run another rank created stayed RUNNING for ever. It goes
        before the run's CREATE_RUN, which the daemon allows for: a missing run is left alone.
        """
        snapshot = self.snapshot()
        if self._told != () or not snapshot:
            return None
        return self.news(snapshot)

    def untold(self) -> bool:
        """Whether the daemon's copy on this connection differs from the set now."""
        return self.snapshot() != self._told

    def news(self, snapshot: tuple[str, ...]) -> OwnedRuns | None:
        """The event that tells the daemon ``snapshot``, or None if it knows it already."""
        if snapshot == self._told:
            return None
        self._told = snapshot
        return OwnedRuns(run_ids=snapshot[-MAX_OWNED_RUNS:], spool_path=self.spool_path)
