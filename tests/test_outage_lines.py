"""What a process says on stderr while no daemon answers: one true line for each thing that happens.

Each test runs a real child process with TRACKD_AUTOSTART=0 and reads its stderr from outside;
what the lines claim (events spooled, points delivered) is checked in the spool file or, through
MLflow, in the store.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, spooled_events, wait_for
from mlflow.tracking import MlflowClient

# Logs 1,000 points and exits, its run ended at exit or (argv[1] == "with") by a with block.
LOG_THEN_EXIT = """
import sys, trackd
if sys.argv[1] == "with":
    with trackd.start_run():
        for step in range(1000):
            trackd.log_metric("x", float(step), step=step)
else:
    trackd.start_run()
    for step in range(1000):
        trackd.log_metric("x", float(step), step=step)
"""


@pytest.mark.parametrize("ending", ["exit", "with"], ids=["run-ended-at-exit", "run-ended-by-with"])
def test_a_process_that_exits_with_no_daemon_says_once_where_its_events_went(tmp_path: Path, ending: str) -> None:
    # It printed "... unreachable: No such file or directory. Holding 1001 events and retrying."
    # and, a millisecond later, that the events were spooled: nothing was retried (the process was
    # exiting), and two lines said one thing.
    spool = tmp_path / "spool"
    env = child_env(
        tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"),
        TRACKD_SPOOL_DIR=str(spool),
    )
    result = subprocess.run([sys.executable, "-c", LOG_THEN_EXIT, ending], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    reason = f"no daemon answers at {tmp_path / 'none.sock'} and TRACKD_AUTOSTART=0 starts none"
    # The run's creation, its 1,000 points and its end.
    assert lines[0].startswith(f"trackd: 1002 events were not delivered: {reason}; they are spooled to {spool}/"), lines[0]
    assert spooled_events(spool) == 1002


# Logs a point every 5 ms to its run until file argv[1] exists, then flushes and prints the run id.
LOG_UNTIL_TOLD = """
import os, sys, time, trackd
run = trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.flush(timeout=30)
print("connected", flush=True)
step = 1
while not os.path.exists(sys.argv[1]):
    trackd.log_metric("x", float(step), step=step)
    step += 1
    time.sleep(0.005)
trackd.flush(timeout=60)
print("run", run.info.run_id, step, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_running_process_says_once_that_it_holds_and_retries_while_its_daemon_is_gone(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # A process that goes on logging while its daemon is gone for a while says so once, and once
    # that it reconnected; every point reaches the store.
    stop = tmp_path / "stop"
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_CONNECT_TIMEOUT="60",  # no spill while it is gone: only the retrying line
    )
    first = DaemonProcess(socket_path).start()
    child = subprocess.Popen(
        [sys.executable, "-c", LOG_UNTIL_TOLD, str(stop)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.extend(line.rstrip("\n") for line in child.stdout or ()), daemon=True),
        threading.Thread(target=lambda: err.extend(line.rstrip("\n") for line in child.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    second = None
    try:
        wait_for(lambda: "connected" in out or child.poll() is not None, 30, message="the child to connect")
        assert first.stop() == 0, first.log()
        wait_for(lambda: any("and retrying" in line for line in err) or child.poll() is not None, 30, message="the retrying line")
        second = DaemonProcess(socket_path).start()
        wait_for(lambda: any("reconnected" in line for line in err) or child.poll() is not None, 30, message="the reconnect")
        stop.touch()
        assert child.wait(60) == 0, "\n".join(err)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for reader in readers:
            reader.join(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        if second is not None:
            assert second.stop() == 0, second.log()
    assert len(err) == 2, "\n".join(err)
    assert err[0].startswith(f"trackd: no daemon answers at {socket_path} and TRACKD_AUTOSTART=0 starts none. Holding "), err
    assert err[0].endswith(" and retrying until one answers: `trackd daemon start` starts one."), err
    assert err[1].startswith(f"trackd: reconnected to the daemon at {socket_path}; resending "), err
    _, run_id, steps = out[-1].split()
    history = MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "x")
    assert sorted(metric.step for metric in history) == list(range(int(steps)))
