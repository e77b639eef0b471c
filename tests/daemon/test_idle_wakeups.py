"""An idle daemon sleeps: once a second for its housekeeping, not four times more for heartbeats
that only a client waiting behind an artifact copy needs.

A user's daemon outlives their jobs (it exits after --idle-timeout); on a laptop, a timer that
fires for nothing keeps a core from its deep sleep states. Wakeups are counted from the kernel's
context-switch counters of every thread of a real daemon process, not timed.
"""

from __future__ import annotations

import time
from pathlib import Path

from helpers import DaemonProcess

WATCH_SECONDS = 4.0


def _sleeps(pid: int) -> int:
    """How many times the threads of ``pid`` have gone to sleep (voluntary context switches)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def test_an_idle_daemon_wakes_about_once_a_second(daemon: DaemonProcess) -> None:
    time.sleep(0.5)  # its start-up work done
    before = _sleeps(daemon.pid)
    time.sleep(WATCH_SECONDS)
    woke = _sleeps(daemon.pid) - before
    # Housekeeping: one a second. The copy heartbeats alone, at 0.25 s, added 16 more.
    assert woke <= 2 * WATCH_SECONDS, f"an idle daemon went to sleep {woke} times in {WATCH_SECONDS:.0f} s"
