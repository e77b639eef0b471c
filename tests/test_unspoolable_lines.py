"""A job whose daemon died while its spool folder cannot be written says once that its events are held
in memory, and once, at exit, how many are lost.

It said it four times, of the same events: the sender thread's "holding them in memory" (with no count),
the end of the job's run "N events were not delivered ... held in memory, and are lost if this process
exits", then exit's "N events are lost". The daemon is a real one, SIGKILLed (autostart off, so none
replaces it); the spool folder is a file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env
from mlflow import MlflowClient

LOGGED_AFTER_THE_KILL = 50

# Logs 5 points that reach the store, SIGKILLs the daemon (pid argv[2]), logs argv[1] more and flushes
# (which raises: no daemon, no spool), then ends its run and exits.
JOB = """
import os, signal, sys, trackd
with trackd.start_run() as run:
    for step in range(5):
        trackd.log_metric("loss", 1.0, step=step)
    trackd.flush()
    print(run.info.run_id, flush=True)
    os.kill(int(sys.argv[2]), signal.SIGKILL)
    for step in range(5, 5 + int(sys.argv[1])):
        trackd.log_metric("loss", 0.5, step=step)
    try:
        trackd.flush(timeout=30)
    except trackd.DaemonUnavailable:
        print("flush raised", flush=True)
"""


def test_held_in_memory_is_said_once_and_what_exit_loses_once_with_every_event_counted(socket_path: Path, tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "mlruns"
    spool.write_text("a file where the spool folder should be")
    daemon = DaemonProcess(socket_path).start()
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool),
                    TRACKD_CONNECT_TIMEOUT="0.3", TRACKD_EXIT_TIMEOUT="2")
    try:
        done = subprocess.run([sys.executable, "-c", JOB, str(LOGGED_AFTER_THE_KILL), str(daemon.pid)],
                              env=env, capture_output=True, text=True, timeout=60)
    finally:
        daemon.kill()  # reaped (the child killed it)
    assert done.returncode == 0, done.stderr
    run_id, flushed = done.stdout.split()[0], done.stdout.splitlines()[-1]
    assert flushed == "flush raised"
    err = done.stderr
    lines = err.splitlines()
    held = [line for line in lines if "in memory" in line]
    assert len(held) == 1, err
    assert re.search(rf"could not spool events to {re.escape(str(spool))}/.*; holding {LOGGED_AFTER_THE_KILL} events in memory, "
                     "lost if this process exits before a daemon answers\\.$", held[0]), held[0]
    lost = [line for line in lines if "lost" in line and line not in held]
    # Every event the store did not get, once: the points logged after the kill and the run's end.
    assert len(lost) == 1, err
    assert lost[0].startswith(f"trackd: {LOGGED_AFTER_THE_KILL + 1} events are lost: no daemon answers at {socket_path}"), lost[0]
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert len(MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "loss")) == 5
    assert run.info.status == "RUNNING"  # its end was lost too (the daemon that would fail it was killed)
