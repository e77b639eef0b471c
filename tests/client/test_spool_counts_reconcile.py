"""The lines that follow spooled events count them as the line that spooled them did: events.

A process that exits with no daemon says "3003 events were not delivered ...; they are spooled to
<file>"; `trackd sync` then said "<file>: delivered 1 batch of client ...", and a reconnect said
"resending 22 spooled and 3 unacknowledged batches": nobody could check that what was spooled
arrived. They say events now, with the batches in brackets. And the spooling line of a script's
last `end_run()` no longer promises that "what follows" is spooled too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, run_python, steps_in_store

JOB = """
import trackd
with trackd.start_run() as run:
    for step in range(2500):
        trackd.log_metric("x", step * 0.5, step=step)
    trackd.log_param("p", "1")
print("run", run.info.run_id, flush=True)
"""


def test_trackd_sync_says_it_delivered_the_events_the_exit_said_it_spooled(socket_path: Path, store: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0")
    job = run_python(JOB, env)
    assert job.returncode == 0, job.stderr
    spooled = re.search(r"trackd: (\d+) events were not delivered: .* spooled to (\S+\.spool)", job.stderr)
    assert spooled is not None, job.stderr
    count, spool = int(spooled[1]), spooled[2]
    assert count > 2500, job.stderr  # the points, the param, the run's creation and end
    # The run's end was the script's last call: its line said "Until then, what follows is spooled
    # there too", of nothing that followed.
    assert "what follows" not in job.stderr and "Events logged after this are spooled there too until" in job.stderr, job.stderr

    daemon = DaemonProcess(socket_path).start()
    try:
        sync = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
            env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert sync.returncode == 0, sync
    # Before: "...: delivered 1 batch of client ...".
    assert re.fullmatch(rf"{re.escape(spool)}: delivered {count} events \(\d+ batch(es)?\) of client \w+\n", sync.stdout), (job.stderr, sync)
    _, run_id = job.stdout.split()
    assert steps_in_store(store, run_id) == list(range(2500))
