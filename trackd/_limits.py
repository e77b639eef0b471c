"""Bounds on the numbers a setting takes, shared by the client's environment and the daemon's flags.

Top level, so that both apply the same bound (the client must not import the daemon, nor the daemon the client).
"""

from __future__ import annotations

# The longest duration a setting takes. The sender waits in poll(), whose timeout is a C int of
# milliseconds (2**31 - 1 ms, 24.8 days): TRACKD_CONNECT_TIMEOUT=1e23 or TRACKD_FLUSH_INTERVAL=1e23
# passed the old "finite" check, and every attempt to connect then died in poll() with OverflowError,
# a traceback retried forever, while the events waited for the spool. A week is longer than any wait means.
MAX_SECONDS = 7 * 24 * 3600.0
# The largest count or size a daemon flag takes: what an int64 holds. The daemon turns some into
# floats (--max-events-per-second 1e400 written out whole raised OverflowError at every connect, and
# no client could connect), and counters travel as msgpack integers, which stop at 64 bits.
MAX_COUNT = 2**63 - 1
