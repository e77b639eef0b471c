"""A process that gave a stopped daemon up (TRACKD_ON_FULL=block, TRACKD_CONNECT_TIMEOUT) and goes
on logging reconnects as soon as the daemon resumes, through the one connection it left waiting in
the daemon's listen queue, and every point lands once.

A real daemon stopped and resumed with signals, a real producer logging at a steady rate, and the
points read back with MLflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, wait_for
from test_stall_give_up import _line, _mlflow_steps

# Connects (point 0 flushed), says "connected <run id>", then logs argv[1] points a second, in
# steps of 100, saying "step N" every 10,000, until file argv[2] exists; then says "logged N",
# flushes within 60 s and ends the run.
STEADY_PRODUCER = """
import os, sys, time, trackd
rate, stop = int(sys.argv[1]), sys.argv[2]
with trackd.start_run() as run:
    trackd.log_metric("x", 0.0, step=0)
    trackd.flush(timeout=30)
    print("connected", run.info.run_id, flush=True)
    step, began = 1, time.monotonic()
    while not os.path.exists(stop):
        for _ in range(100):
            trackd.log_metric("x", float(step), step=step)
            step += 1
        if step % 10_000 == 1:
            print("step", step, flush=True)
        time.sleep(max(0.0, began + step / rate - time.monotonic()))
    print("logged", step, flush=True)
    trackd.flush(timeout=60)
"""


def _step(child: Child) -> int:
    steps = [int(line.split()[1]) for line in list(child.out) if line.startswith("step ")]
    return steps[-1] if steps else 0



def _said(child: Child, words: str) -> Callable[[], bool]:
    """Whether the child said ``words`` on stderr, or exited (a wait's condition)."""
    return lambda: any(words in line for line in child.err) or child.process.poll() is not None


@pytest.mark.timeout(240)
def test_a_process_still_logging_reconnects_when_the_stopped_daemon_it_gave_up_resumes(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    stop, spool_dir = tmp_path / "stop", tmp_path / "spool"
    # A buffer that fills ten times a second: each fill asks the sender thread to spool it.
    limits = {"TRACKD_CONNECT_TIMEOUT": "1", "TRACKD_AUTOSTART": "0", "TRACKD_MAX_BUFFERED": "2000"}
    child = Child(STEADY_PRODUCER, ["20000", str(stop)], child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), **limits,
    ))
    with child:
        wait_for(lambda: _line(child, "connected") is not None or child.process.poll() is not None, 60, message="point 0")
        with daemon.paused():
            wait_for(_said(child, "were not delivered"), 60, message="the give-up")
            # Three timeouts' worth more points logged (and spooled) while the daemon stays stopped.
            given_up_at = _step(child)
            wait_for(lambda: _step(child) >= given_up_at + 60_000 or child.process.poll() is not None, 60,
                     message="the loop going on")
        # Each spill cut the attempt to reconnect short, and the backoff too: an attempt got through
        # only if the daemon answered before the buffer filled again.
        wait_for(_said(child, "trackd: reconnected to the daemon at"), 60, message="the reconnect while the loop runs")
        assert child.process.poll() is None, child.stderr()
        stop.touch()
        assert child.wait(timeout=120) == 0, child.stderr()
    connected, logged = _line(child, "connected"), _line(child, "logged")
    assert connected is not None and logged is not None, child.stderr()
    assert _mlflow_steps(store, connected[1]) == list(range(int(logged[1])))
    assert not list(spool_dir.glob("*.spool")), "the spool was not delivered"
    # The first connection and the one attempt that waited in the listen queue: each spill's
    # attempt used to leave a dead connection there, served when the daemon resumed.
    client_id = re.escape(Path(child.stderr().split(" are spooled to ")[1].split(".spool")[0]).name)
    assert len(re.findall(rf"connected \(client {client_id},", daemon.log())) == 2, daemon.log()
