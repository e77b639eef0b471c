"""One "waiting" line for a family of forked processes whose exits wait for one stalled daemon.

A job's rank that forks DataLoader-style workers (``os.fork``, a fork ``Pool``) exits with each of
them waiting for the daemon: 4 ranks with 2 workers each printed 12 "waiting up to N s more" lines
for one SIGSTOPped daemon, and 8 x 8 would print 72. Each process still says what became of its
own events (its count, the spool file); the wait is said once for the processes that wait together.
"""

from __future__ import annotations

import mmap
import struct
import time

# Until when (time.monotonic(), one clock for every process of the machine) a wait said by a
# process of this family lasts. Shared with every process forked after this module loaded (an
# anonymous mmap is MAP_SHARED): the client's modules load at its first run, before its workers
# are forked. A process started afresh (spawn, exec) has its own, and says its own wait.
_ANNOUNCED_UNTIL = mmap.mmap(-1, struct.calcsize("d"))
# A wait that ends this little after the said one is covered by it: workers joined together start
# their waits within a fraction of a second of each other.
SLACK = 0.5


def wait_unsaid(seconds: float) -> bool:
    """Whether a wait of ``seconds`` from now is not covered by one another process of this family
    said already: if so, it is noted as said (this process says it). Two processes can both find it
    unsaid in the same instant: two lines, as before, not none."""
    now = time.monotonic()
    (until,) = struct.unpack_from("d", _ANNOUNCED_UNTIL, 0)
    if until + SLACK >= now + seconds:
        return False
    struct.pack_into("d", _ANNOUNCED_UNTIL, 0, max(until, now + seconds))
    return True
