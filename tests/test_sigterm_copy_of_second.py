"""A copy of a process's second SIGTERM is ignored, as a copy of its first is: only a third kills.

A Pool's terminate() gives its workers their first SIGTERM, which finds them waiting for a stopped
daemon; a scheduler's group SIGTERM a moment later is their second (they stop waiting and spool
what is left); and their parent, going down on that same signal, sends them its copy. The copy
counted as a third, which kills at once: a worker was killed mid-spool and its points were lost
without a line (a chaos soak, benchmarks/chaos_soak.py: 161 of them). Here one process, holding
200,000 points for the stopped daemon (its spool write takes a while), gets the three by hand: the
first, the second a second later, and a copy of the second soon after.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import DaemonProcess, child_env
from mlflow.tracking import MlflowClient

JOB = """
import sys, trackd

with trackd.start_run(run_name="worker") as run:
    trackd.flush()
    print(run.info.run_id, flush=True)
    sys.stdin.readline()  # the daemon is stopped now
    for step in range(200000):
        trackd.log_metric("loss", float(step), step=step)
    print("logged", flush=True)
    sys.stdin.readline()
"""


def test_a_copy_of_the_second_sigterm_does_not_kill_a_process_spooling_its_events(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="600", TRACKD_MAX_BUFFERED="250000",
        TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    job = subprocess.Popen(
        [sys.executable, "-c", JOB], env=env, cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert job.stdin is not None and job.stdout is not None and job.stderr is not None
    run_id = job.stdout.readline().strip()
    daemon.signal(signal.SIGSTOP)
    try:
        job.stdin.write("go\n")
        job.stdin.flush()
        assert job.stdout.readline() == "logged\n"
        job.send_signal(signal.SIGTERM)
        line = job.stderr.readline()  # its handler waits for the daemon, and says so after a second
        assert "waiting up to" in line, line
        job.send_signal(signal.SIGTERM)  # the second: stop waiting, spool
        time.sleep(0.05)  # not a bound: the copy comes after the second's handler ran, within the grace
        job.send_signal(signal.SIGTERM)  # its copy
        _, rest = job.communicate(timeout=120)
    finally:
        daemon.signal(signal.SIGCONT)
    assert job.returncode == -signal.SIGTERM
    # This used to kill the process at once, its events not all spooled, and no line said so.
    assert "a second SIGTERM ended the wait for the daemon" in rest and "spooled to" in rest, rest
    sync = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    client = MlflowClient(tracking_uri=str(store))
    # (Read from the file: 200,000 points through MLflow's reader take a while.)
    lines = (next(store.glob(f"*/{run_id}")) / "metrics" / "loss").read_text().splitlines()
    assert [int(line.split()[2]) for line in lines] == list(range(200000))
    assert client.get_run(run_id).info.status == "KILLED"
