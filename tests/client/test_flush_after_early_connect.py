"""flush() waits for the daemon's acknowledgement also when the sender connected before anything was logged.

The sender thread connects as the client is made (a short script's first events then wait for no
handshake). Its first cycle, with nothing buffered, armed the logging calls' wake-up at
MAX_BEFORE_SEND records, so the run's creation and the first values went past the slow path that
marks a sender as used; flush(), finding it unused and its buffer sent, returned at once, before
the daemon had acknowledged them (1 event unacknowledged after flush() in 11 of 20 processes),
and close() skipped its final flush the same way. A real child waits until the daemon shows it
connected and the daemon is stopped, then starts a run, and flushes once the thread has sent the
run's creation: flush() must wait for the daemon to resume and acknowledge it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import DaemonProcess, child_env, wait_for

CHILD = """
import json, sys, time, trackd
from trackd.client import get_client
trackd.set_tracking_uri(sys.argv[1])
client = get_client()
print("made", flush=True)
sys.stdin.readline()  # the sender has connected, and the daemon is stopped
run = trackd.start_run()
while client.stats()["buffered"] or not client.stats()["sent_seq"]:
    time.sleep(0.001)  # the thread sends the creation on its own
print("sent", flush=True)
trackd.flush()  # the daemon resumes meanwhile
after_start = client.stats()["unacked_events"]
for step in range(100):
    trackd.log_metric("loss", float(step), step=step)
trackd.end_run()
trackd.flush()
print(json.dumps({"run_id": run.info.run_id, "after_start": after_start,
                  "after_points": client.stats()["unacked_events"]}), flush=True)
"""


def test_flush_returns_only_once_the_daemon_acknowledged_what_a_client_connected_ahead_logged(
    daemon: DaemonProcess, store: Path
) -> None:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "made", child.communicate(timeout=30)
            wait_for(
                lambda: any(entry["connected"] for entry in daemon.status()["clients"] if entry["pid"] == child.pid),
                timeout=60, interval=0.05, message="the client connected before logging",
            )
            daemon.signal(signal.SIGSTOP)
            try:
                child.stdin.write("\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "sent", child.communicate(timeout=30)
                time.sleep(0.5)  # not a bound: flush() may begin before or after; it must wait either way
            finally:
                daemon.signal(signal.SIGCONT)
            report = json.loads(child.stdout.readline())
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
    # This used to be 1: the run's creation, not acknowledged yet when flush() returned.
    assert report["after_start"] == 0 and report["after_points"] == 0, report
    points = (next(store.glob(f"*/{report['run_id']}")) / "metrics" / "loss").read_text().splitlines()
    assert len(points) == 100
