"""A short script's run reaches the daemon without waiting for a handshake: its sender connects
as the client is made.

Benchmark suites launch hundreds of scripts that start a run, log a few params and metrics and
leave by ``os._exit`` (no flush, no atexit). The sender thread first connected once the run's
creation was buffered: 0 of 50 such processes left their run in the store (docs/guarantees.md
row 3). A real child process holds at each step until the test has seen, from outside (the
daemon's status, the store), that the step's events got there without a flush: nothing here waits
on a clock but the deadlines. The send interval is set far beyond them: the run's creation, the
first record, wakes the thread, and goes at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, wait_for

# Longer than any wait below: a value the thread sends at its next send interval never arrives.
FLUSH_INTERVAL = "600"
DEADLINE = 60.0

CHILD = """
import os, sys, trackd
trackd.set_tracking_uri(sys.argv[1])
trackd.Client(sys.argv[1])  # the sender the fluent calls use too (one per store and config)
print("made", flush=True)
sys.stdin.readline()
run = trackd.start_run()
print(run.info.run_id, flush=True)
sys.stdin.readline()
os._exit(0)
"""


def _connected(daemon: DaemonProcess, pid: int) -> bool:
    return any(entry["connected"] for entry in daemon.status()["clients"] if entry["pid"] == pid)


def _step(child: subprocess.Popen[str]) -> str:
    """Let the child go on to its next step; what it prints then."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


@pytest.mark.timeout(240)
def test_a_script_leaving_by_os_exit_after_its_events_reached_the_daemon_keeps_its_run(daemon: DaemonProcess, store: Path) -> None:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_FLUSH_INTERVAL=FLUSH_INTERVAL)
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "made", child.communicate(timeout=30)
            # Nothing logged yet: the client connected as it was made (it waited for a first event).
            wait_for(lambda: _connected(daemon, child.pid), timeout=DEADLINE, interval=0.1, message="the client connected before logging")

            run_id = _step(child)
            wait_for(lambda: any(store.glob(f"*/{run_id}/meta.yaml")), timeout=DEADLINE, interval=0.1, message="the run's folder")
            run_folder = next(store.glob(f"*/{run_id}"))

            assert run_folder.is_dir()
            _step(child)  # os._exit(0): no flush, no atexit
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()

    assert MlflowClient(str(store)).get_run(run_id).info.run_id == run_id
