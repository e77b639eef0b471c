"""A daemon that stops acknowledging (SIGSTOP, a store on a dead NFS mount, a deadlock) while a
logging call waits for room under TRACKD_ON_FULL=block is given up: the call returns, the buffer
and the unacknowledged batches go to the spool, one line says how many, and every point is written
once after the daemon resumes.

Each producer is a real process beside a real daemon that the test stops and resumes with signals;
the points are read back with MLflow.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, fill, mounted_tmpfs, wait_for

# Connects (point 0 flushed), says "connected", waits for file argv[2], then logs argv[1] points
# to a new run as fast as it can, says "logged" and flushes within 60 s before it exits.
PRODUCER = """
import json, os, sys, time, trackd
points, go = int(sys.argv[1]), sys.argv[2]
client = trackd.Client()
run_id = client.create_run("0").info.run_id
client.log_metric(run_id, "x", 0.0, step=0)
client.flush(timeout=30)
print("connected", run_id, flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
for step in range(1, points):
    client.log_metric(run_id, "x", float(step), step=step)
print("logged", json.dumps(client.stats()), flush=True)
while not os.path.exists(go + ".resumed"):
    time.sleep(0.01)
client.flush(timeout=60)
client.close()
print("flushed", flush=True)
"""

MLFLOW_STEPS = """
import json, sys
from mlflow import MlflowClient
history = MlflowClient(sys.argv[1]).get_metric_history(sys.argv[2], "x")
print(json.dumps(sorted(metric.step for metric in history)))
"""


def _mlflow_steps(store: Path, run_id: str) -> list[int]:
    """The run's steps of metric "x" as MLflow itself reads them from ./mlruns (duplicates kept)."""
    read = subprocess.run([sys.executable, "-c", MLFLOW_STEPS, str(store), run_id], capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    steps: list[int] = json.loads(read.stdout)
    return steps


def _line(child: Child, word: str) -> list[str] | None:
    for line in list(child.out):
        if line.split(" ", 1)[0] == word:
            return line.split(" ", 1)
    return None


def _log_while_stopped(
    daemon: DaemonProcess, env: dict[str, str], points: int, go: Path, before_stop: Callable[[], None] = lambda: None
) -> Child:
    """Run PRODUCER: once it is connected, stop the daemon and let it log ``points``; the calls
    must return while the daemon is still stopped (a generous bound: the wait itself is
    TRACKD_CONNECT_TIMEOUT). Then resume the daemon and wait for the producer's flush and exit."""
    with Child(PRODUCER, [str(points), str(go)], env) as child:
        wait_for(lambda: _line(child, "connected") is not None or child.process.poll() is not None, 60, message="point 0")
        before_stop()
        daemon.signal(signal.SIGSTOP)
        try:
            go.touch()
            wait_for(lambda: _line(child, "logged") is not None or child.process.poll() is not None, 60, message="the calls to return")
            assert child.process.poll() is None, child.stderr()
        finally:
            daemon.signal(signal.SIGCONT)
        Path(str(go) + ".resumed").touch()
        assert child.wait(timeout=90) == 0, child.stderr()
    return child


@pytest.mark.timeout(180)
def test_a_logging_call_gives_a_stopped_daemon_up_and_every_point_lands_once_after_it_resumes(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Four buffers' worth: the calls fill the buffer while the daemon is stopped and would wait
    # for as long as it stays stopped; this used to hang here until the daemon was resumed.
    points, go, spool_dir = 100_000, tmp_path / "go", tmp_path / "spool"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="3",
        TRACKD_AUTOSTART="0",
    )
    child = _log_while_stopped(daemon, env, points, go)
    given_up = [line for line in child.err if "were not delivered" in line and "acknowledged nothing" in line]
    assert len(given_up) == 1, child.stderr()
    assert given_up[0].startswith("trackd: "), given_up[0]
    assert (
        f"events were not delivered: the daemon at {daemon.paths.socket} acknowledged nothing for 3 s while logging calls "
        "waited for room (TRACKD_CONNECT_TIMEOUT=3): it may be stopped (SIGSTOP, a debugger), stuck writing to its disk "
        f"or deadlocked; they are spooled to {spool_dir}/"
    ) in given_up[0], given_up[0]
    assert "Events logged after this are spooled there too until a daemon answers, and counted when this process closes its clients." in given_up[0]
    # The one line when the daemon answers again, as after any outage.
    assert len([line for line in child.err if line.startswith("trackd: reconnected to the daemon at")]) == 1, child.stderr()
    stats = json.loads(_line(child, "logged")[1])  # type: ignore[index]
    assert stats["dropped"] == 0
    connected = _line(child, "connected")
    assert connected is not None
    # Sent to the stopped daemon, which wrote them when it resumed, and spooled: each once.
    assert _mlflow_steps(store, connected[1]) == list(range(points))
    assert not list(spool_dir.glob("*.spool")), "the spool was not delivered"


# Logs through a Client from argv[1] threads while the main thread exits beside a stopped daemon:
# exit's close gives the daemon up after TRACKD_EXIT_TIMEOUT while the threads go on logging (a
# system-metrics monitor does); prints what was logged and the client's counters after that close.
EXIT_WHILE_THREADS_LOG = """
import atexit, json, os, sys, threading, time
stop, logged, threads = threading.Event(), [0] * int(sys.argv[1]), []

def report():
    stop.set()
    for thread in threads:
        thread.join()
    # Counts as late what the threads logged after exit's own count (the sender's counter, read
    # as exit reads it); records before the final drain's mark are the sender's, never late.
    client._sender.take_late()
    print("closed", json.dumps({"logged": sum(logged) + 1, **client.stats()}), flush=True)

atexit.register(report)  # before trackd's own: it runs after trackd closed its clients
import trackd
from trackd.errors import ClientClosedError
client = trackd.Client()
run_id = client.create_run("0").info.run_id
client.log_metric(run_id, "x", -1.0, step=0)
client.flush(timeout=30)
print("connected", run_id, flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)

def log(index):
    step = 1 + index * 10_000_000
    while not stop.is_set():
        logged[index] += 1  # before the call: one the close refuses (ClientClosedError) is counted too
        try:
            client.log_metric(run_id, "x", 0.0, step=step)
        except ClientClosedError:
            return
        step += 1

threads.extend(threading.Thread(target=log, args=(i,), daemon=True) for i in range(len(logged)))
for thread in threads:
    thread.start()
time.sleep(0.5)
"""


@pytest.mark.timeout(180)
# The loss was a race: the sender thread, backing off after the give-up's spill, was woken by the
# close's mark about half the time (one logging thread, a 2-core machine), and then ended with the
# final drain's records in the buffer. Three attempts catch it nearly always.
@pytest.mark.parametrize("attempt", range(3))
def test_points_other_threads_log_while_exit_gives_a_stopped_daemon_up_are_spooled_or_counted(
    attempt: int, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    go, spool_dir = tmp_path / "go", tmp_path / "spool"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_EXIT_TIMEOUT="1",
        TRACKD_AUTOSTART="0", TRACKD_ON_FULL="drop",
    )
    with Child(EXIT_WHILE_THREADS_LOG, ["1", str(go)], env) as child:
        wait_for(lambda: _line(child, "connected") is not None or child.process.poll() is not None, 60, message="point 0")
        daemon.signal(signal.SIGSTOP)
        try:
            go.touch()
            assert child.wait(timeout=90) == 0, child.stderr()
        finally:
            daemon.signal(signal.SIGCONT)
    connected, closed = _line(child, "connected"), _line(child, "closed")
    assert connected is not None and closed is not None, child.stderr()
    stats = json.loads(closed[1])
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 30, message="the daemon's backlog written")
    steps = _mlflow_steps(store, connected[1])
    assert len(set(steps)) == len(steps), "points written twice"
    # Every point logged is written, or counted: dropped (the buffer was full) or late (logged
    # after the close's final drain). The final drain's records, logged between the give-up's
    # spill and the close's mark, used to be left in the buffer: in none of these.
    accounted = len(steps) + stats["dropped"] + stats["late"]
    # Each thread's last call may have been refused whole by the closed client: at most one each.
    assert stats["logged"] - 2 <= accounted <= stats["logged"], (len(steps), stats, child.stderr())
    assert stats["buffered"] == 0


@pytest.mark.timeout(180)
def test_a_stopped_daemon_given_up_with_the_spool_disk_full_drops_and_counts_rather_than_wait(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    points, go, spool_dir = 100_000, tmp_path / "go", tmp_path / "spool"
    spool_dir.mkdir()
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="3",
        TRACKD_AUTOSTART="0",
    )
    with mounted_tmpfs(spool_dir, "size=64k,mode=0700"):
        # Neither the daemon nor the spool takes events: this used to wait until the daemon resumed.
        child = _log_while_stopped(daemon, env, points, go, before_stop=lambda: fill(spool_dir / "filler"))
    dropping = [line for line in child.err if "new events are dropped and counted until one of them does" in line]
    assert len(dropping) == 1, child.stderr()
    assert f"and neither the daemon at {daemon.paths.socket}, given up for acknowledging nothing, nor the spool file takes events" in dropping[0]
    assert "No space left on device" in dropping[0], dropping[0]
    stats = json.loads(_line(child, "logged")[1])  # type: ignore[index]
    assert stats["dropped"] > 0
    assert f"trackd: {stats['dropped']} events were dropped in all because the buffer was full and neither the daemon nor the spool file took them (TRACKD_ON_FULL=block)." in child.err, child.stderr()
    connected = _line(child, "connected")
    assert connected is not None
    steps = _mlflow_steps(store, connected[1])
    # What the buffer and the unacknowledged window held is delivered once the daemon resumes;
    # the rest was dropped and counted.
    assert len(set(steps)) == len(steps) and len(steps) + stats["dropped"] == points, (len(steps), stats)
