"""The daemon's settings: ``DaemonConfig``, with the defaults that are not the batcher's or the
decode budget's beside it (those sit beside their own classes, in ``_batcher.py`` and ``_budget.py``).

``_main.py`` builds a DaemonConfig from the command line's flags; ``Server`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._paths import DaemonPaths
from ._batcher import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS
from ._budget import DEFAULT_MAX_EVENTS_PER_SECOND

# Past this many bytes waiting to be written, connections stop reading: clients then hold their
# events (their buffers are bounded too) instead of the daemon growing without bound.
DEFAULT_MAX_BACKLOG_BYTES = 256 * 1024 * 1024
# Metric files kept open (all stores together) when --max-open-files is not given: as many as the file limit
# allows after room for connections, up to this. Reopening a file per batch costs more than the
# write itself (79% of the daemon's time with 10,000 files behind a cap of 512).
MAX_DEFAULT_OPEN_FILES = 16_384
# A training machine runs tens of processes per user, not thousands. (What their partial frames
# may hold has a bound of its own: _partial_frames.MAX_PARTIAL_FRAME_BYTES.)
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


@dataclass(kw_only=True)
class DaemonConfig:
    """How the daemon runs; every field has a default that suits a training machine."""

    paths: DaemonPaths
    loop: str | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: float = DEFAULT_MAX_AGE
    max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES
    # None: sized from the file limit at start (see Server._open_files_budget).
    max_open_files: int | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # Each connection's budget of decoded events per second, binding only while others wait.
    max_events_per_second: int = DEFAULT_MAX_EVENTS_PER_SECOND
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    # Exit after this many seconds without clients (0: never). The client starts daemons with one.
    idle_timeout: float = 0.0
