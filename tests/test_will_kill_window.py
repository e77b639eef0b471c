"""A process SIGKILLed a few milliseconds after start_run never leaves its run RUNNING with its data.

The sender thread told the daemon the runs its process owns (``OwnedRuns``) in a write after the
one carrying the batch that created the run. Between the two it waits for the GIL, which a main
thread busy in pure Python holds for up to the 5 ms switch interval: a process killed there had
its run and its metric in the store, and no will to fail it, so the run stayed RUNNING for ever
(a user's sweep: 2 to 3 runs in 20, the daemon's log saying "disconnected: 2 events received"
with no "had not ended 1 run"). The runs are told ahead of the batch that creates them now.

Each child does what the user's script did: start_run, one log_metric, burn the CPU in Python for
a few milliseconds, then SIGKILL itself. A kill before the run reached the socket leaves no run
(docs/multiprocessing.md: "a run it created is then not in the store either"); a run in the store is failed.
The same window was open at a reconnect, for a run started while no daemon ran.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, wait_for
from test_wills import FAILURE_REASON_TAG, WAIT_FOR_STDIN, finish, start_child, wait_for_status, wait_until_no_will_is_pending
from test_wills_restart import clean_up, kill_the_daemon_then_go_on

from trackd._paths import DaemonPaths

# Busy for a few ms after start_run, across the switch interval (5 ms) where the old code's
# window was: 24 children, each in a fresh interpreter (~0.4 s), keep the test under 20 s.
BUSY_SECONDS = [0.002, 0.004, 0.006, 0.008] * 6

CHILD = """
import os, signal, sys, time, trackd
trackd.set_tracking_uri(sys.argv[1])
# An experiment of its own, which only the daemon can create: the child is connected before
# start_run, as a training script is by the time it logs (set_experiment of an experiment in the
# store reads it there and need not connect).
trackd.set_experiment(f"kill-window-{sys.argv[2]}")
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
    experiments = [e.experiment_id for e in mlflow.search_experiments() if e.name.startswith("kill-window-")]
    assert len(experiments) == len(BUSY_SECONDS)
    runs = mlflow.search_runs(experiments)
    assert runs, "no child's run reached the store: the children were killed too early to test anything"
    running = [(run.info.run_name, run.data.metrics) for run in runs if run.info.status == "RUNNING"]
    assert running == [], f"{len(running)} of {len(runs)} runs in the store left RUNNING: {running}"
    assert {run.info.status for run in runs} == {"FAILED"}


def test_a_run_started_while_no_daemon_ran_is_failed_if_its_process_dies_as_it_is_resent(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # A reconnecting process told its runs only after everything it resent, and the next daemon
    # held the will of the last connection meanwhile: a run started while no daemon ran, resent
    # with its 300,000 points, was written, and its process killed before the set came stayed
    # RUNNING for ever. The set goes right after the Hello now.
    body = WAIT_FOR_STDIN + (
        "nested = trackd.start_run(nested=True)\nprint('started', flush=True)\nprint(nested.info.run_id, flush=True)\n"
        "for step in range(300_000):\n    trackd.log_metric('loss', 1.0, step=step)\n"
    ) + WAIT_FOR_STDIN
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(
        store, socket_path, body, TRACKD_MAX_BUFFERED="1000000", TRACKD_MAX_BUFFERED_BYTES=str(1024 * 1024 * 1024)
    )
    second = None
    try:
        kill_the_daemon_then_go_on(first, child, paths, run_id, "started")
        assert child.stdout is not None
        nested_id = child.stdout.readline().strip()  # created while no daemon runs (TRACKD_AUTOSTART=0)
        second = DaemonProcess(socket_path).start()
        # Killed as soon as the resent run is in the store, long before its points are all resent.
        wait_for(lambda: any(store.glob(f"*/{nested_id}/meta.yaml")), timeout=20, interval=0.001, message="the run resent")
        child.kill()
        assert finish(child) == -signal.SIGKILL
        wait_until_no_will_is_pending(second)
        run = wait_for_status(store, nested_id, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
    finally:
        clean_up(child, second)
