"""Short jobs under a benchmark harness: `timeout`, `xargs -P`, `make -j` start and stop them.

Each job is a real process with a real daemon; what the harness does to it is done from outside
(or, where the timing must be exact, by the job to itself, as the harness would).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

from trackd.store import StoreReader

# Logs point 0 and flushes, prints the run id, then on a line from stdin (the daemon is stopped by
# then) logs point 1 and is sent SIGTERM twice, as GNU `timeout` sends it: to the job, then to the
# job's process group, which holds the job. The second comes once the handler has begun.
TERMINATED_TWICE = """
import os, signal, sys, threading, time, trackd
trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.flush()
print("run", trackd.active_run().info.run_id, flush=True)
sys.stdin.readline()
trackd.log_metric("x", 1.0, step=1)
ours = signal.getsignal(signal.SIGTERM)

def send_again():
    while signal.getsignal(signal.SIGTERM) is ours:
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGTERM)
    print("sent again", flush=True)

threading.Thread(target=send_again, daemon=True).start()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_sigterm_sent_to_the_job_and_its_process_group_still_delivers_and_ends_the_run_killed(
    daemon: DaemonProcess, store: Path
) -> None:
    # `timeout 60 python job.py` SIGTERMs the job and then its process group: the second copy,
    # arriving a few microseconds into the handler, killed the job at once about one time in
    # eight (5 of 40 jobs under `xargs -P 8`), leaving its run RUNNING and its last points unsent.
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    child = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_TWICE], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        run_id = child.stdout.readline().split()[1]
        daemon.signal(signal.SIGSTOP)  # the handler's delivery waits until the repeat has come
        child.stdin.write("\n")
        child.stdin.flush()
        repeated = child.stdout.readline()  # "" when the repeat killed the job
    finally:
        daemon.signal(signal.SIGCONT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGTERM, stderr
    assert repeated == "sent again\n", f"the repeated SIGTERM killed the job at once:\n{stderr}"
    run = StoreReader(store).get_run(run_id)
    assert run.info.status == "KILLED"
    assert [point.step for point in StoreReader(store).get_metric_history(run_id, "x")] == [0, 1]
