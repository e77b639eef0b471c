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
# What the file limit (the soft RLIMIT_NOFILE) must leave besides data connections, so that they
# never take the last descriptors: with `ulimit -n 1024`, 1,000 idle clients used every one, new
# clients were reset with no reply (libuv accepts and closes what it has no descriptor for), status
# said "hung", and a connected client's new metric files failed "Too many open files".
# The daemon's own: stdio, its log, lock, journal and wills journal, its listening socket (two
# while it binds a new one), the event loop's, the writer's passing files, the copier threads' files.
OWN_FILES_RESERVE = 64
# Status and stop requests (a Hello without a store) served beyond --max-connections: `trackd
# daemon status` answers while data clients fill every slot.
CONTROL_CONNECTIONS = 8
# Connections accepted at once over every limit, each to be refused with its ErrorReply (which it
# holds for up to a second, its Hello read and discarded); a burst beyond them may be reset.
REFUSAL_RESERVE = 32
# The least of the metric-file cache (--max-open-files, or as the file limit allows).
MIN_OPEN_FILES = 64
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
    # The file it logs to (absolute), named by `trackd daemon status`; None: its stderr.
    log_file: str | None = None


def fitted_connections(max_connections: int, max_open_files: int | None, file_limit: int) -> int:
    """``max_connections`` lowered, when it must be, so that data connections, status requests, refusals,
    the daemon's own files and the metric-file cache's least (``max_open_files`` if smaller) fit
    ``file_limit``; at least 1."""
    files = min(max_open_files or MIN_OPEN_FILES, MIN_OPEN_FILES)
    room = file_limit - files - OWN_FILES_RESERVE - CONTROL_CONNECTIONS - REFUSAL_RESERVE
    return max(1, min(max_connections, room))
