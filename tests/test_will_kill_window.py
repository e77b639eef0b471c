"""A process SIGKILLed a few milliseconds after start_run never leaves its run RUNNING with its data.

The sender thread told the daemon the runs its process owns (``OwnedRuns``) in a write after the
one carrying the batch that created the run. Between the two it waits for the GIL, which a main
thread busy in pure Python holds for up to the 5 ms switch interval: a process killed there had
its run and its metric in the store, and no will to fail it, so the run stayed RUNNING for ever
(a user's sweep: 2 to 3 runs in 20, the daemon's log saying "disconnected: 2 events received"
with no "had not ended 1 run"). The runs are told ahead of the batch that creates them now.

Each child does what the user's script did: start_run, one log_metric, burn the CPU in Python for
a few milliseconds, then SIGKILL itself. A kill before the run reached the socket leaves no run
(README: "a run it created is then not in the store either"); a run in the store is failed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, wait_for

# Busy for a few ms after start_run, across the switch interval (5 ms) where the old code's
# window was: 24 children, each in a fresh interpreter (~0.4 s), keep the test under 20 s.
BUSY_SECONDS = [0.002, 0.004, 0.006, 0.008] * 6

CHILD = """
import os, signal, sys, time, trackd
trackd.set_tracking_uri(sys.argv[1])
trackd.set_experiment("kill-window")  # connected before start_run, as in a training script
trackd.start_run(run_name=sys.argv[2])
trackd.log_metric("result", 1.0)
busy, start = float(sys.argv[3]), time.perf_counter()
while time.perf_counter() - start < busy:
    pass  # pure Python: the main thread holds the GIL, the sender thread waits for it
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.timeout(120)
def test_a_run_in_the_store_of_a_process_killed_ms_after_start_run_is_failed(daemon: DaemonProcess, store: Path) -> None:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")
    for index, busy in enumerate(BUSY_SECONDS):
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(store), f"kill-{index}", str(busy)],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
    # Every child's connection ended and every will applied: a run failed for one is failed now.
    wait_for(
        lambda: (status := daemon.status())["clients_connected"] == 0 and status["wills_pending"] == 0,
        timeout=30, message="no client connected and no will pending",
    )
    mlflow = MlflowClient(tracking_uri=f"file:{store}")
    experiment = mlflow.get_experiment_by_name("kill-window")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id])
    assert runs, "no child's run reached the store: the children were killed too early to test anything"
    running = [(run.info.run_name, run.data.metrics) for run in runs if run.info.status == "RUNNING"]
    assert running == [], f"{len(running)} of {len(runs)} runs in the store left RUNNING: {running}"
    assert {run.info.status for run in runs} == {"FAILED"}
