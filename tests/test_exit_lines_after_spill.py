"""Exit with a stopped daemon, after the events went to the spool file: each fact in one line.

A process logs while the daemon is stopped (SIGSTOP): after TRACKD_CONNECT_TIMEOUT the sender
spools its events and says so ("N events spooled to ..."). The process then exits, and exit's
bounded flush waits for a daemon to take them. Its line used to say it waited "for N events to
reach the daemon", the same N events the line before had put in the spool file.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, spooled_events, wait_for

# Starts a run, logs argv[1] points, and exits once file argv[2] exists.
LOG_THEN_EXIT = """
import os, sys, time, trackd
trackd.start_run()
for step in range(int(sys.argv[1])):
    trackd.log_metric("x", float(step), step=step)
print("logged", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
"""


@pytest.mark.timeout(120)
def test_exit_after_a_spill_does_not_say_it_waits_for_the_spooled_events_to_reach_the_daemon(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool_dir, go = tmp_path / "spool", tmp_path / "go"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0",
        # The first failed handshake spools (after 5 s); the next one is still under way when exit
        # begins, so exit's wait goes past its first second and says what it waits for.
        TRACKD_CONNECT_TIMEOUT="5", TRACKD_EXIT_TIMEOUT="3",
    )
    daemon.signal(signal.SIGSTOP)
    try:
        with Child(LOG_THEN_EXIT, ["100", str(go)], env) as child:
            wait_for(lambda: any("spooled to" in line for line in child.err) or child.process.poll() is not None, 60,
                     message="the spill's line")
            go.touch()
            code = child.wait(timeout=60)
        assert code == 0, child.stderr()
        # The run's creation, its 100 points and its end at exit.
        assert spooled_events(spool_dir) == 102
        spooled = [line for line in child.err if re.search(r"\d+ events? (were )?spooled to", line)]
        assert spooled and "101 events spooled to" in spooled[0], child.stderr()
        # This used to say "waiting up to 2 s for 102 events to reach the daemon at ...". What it
        # waits for now: a daemon to take the spool file, or the events not in it (the run's end
        # at exit, if the thread has not spooled it yet), which the give-up line then counts.
        waiting = [line for line in child.err if line.startswith("trackd: waiting")]
        assert waiting, child.stderr()
        for line in waiting:
            assert re.fullmatch(
                r"trackd: waiting up to \d+ s more \(\d+ s in all\) for (the daemon at \S+ to answer and take the spool file"
                r"|1 event not in the spool file to reach the daemon at \S+)\.", line
            ), child.stderr()
    finally:
        daemon.signal(signal.SIGCONT)
