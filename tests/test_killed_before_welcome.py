"""A process's first batches go into the socket behind its Hello, before the daemon's Welcome.

A process that started a run and logged while its daemon was stopped (SIGSTOP) or busy, and was
then SIGKILLed, left nothing in the store, not even the run (benchmarks/chaos_soak.py counted such
runs): its first connection waited for the Welcome before sending any batch, so the run's creation
and its points were in the killed process's memory. Sent behind the Hello, they wait in the
socket, and the daemon writes them when it resumes. Sent ahead and then given up (spooled), they
reach the daemon twice, from the dropped connection and from the spool: written once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from trackd.protocol import MAX_INLINE_ARTIFACT_SIZE

from helpers import Child, DaemonProcess, child_env, metric_lines, steps_in_store, wait_for
from test_wills import mlflow_run

POINTS = 1_000

# Starts a run, logs a param and POINTS points, and waits (at most 10 s) until its sender has sent
# them all: taken from its buffer and numbered (sent_seq), which before the daemon's Welcome means
# sent ahead of it (the old code never did, and the wait ran out). Prints "run <id>", then
# "sent <seq>"; then by argv[1]: "kill" SIGKILLs itself; "end" ends the run (a bounded flush that
# gives the stopped daemon up and spools) and exits; "live" ends it, prints "ended" and the events
# it spooled, and, once the file argv[2] exists, flushes and exits.
LOGGER = f"""
import os, signal, sys, time, trackd
from trackd.client import get_client
run = trackd.start_run()
print("run", run.info.run_id, flush=True)
trackd.log_param("lr", "0.1")
for step in range({POINTS}):
    trackd.log_metric("x", float(step), step=step)
deadline = time.monotonic() + 10
while ((stats := get_client().stats())["buffered"] or not stats["sent_seq"]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("sent", stats["sent_seq"], flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
trackd.end_run()
if sys.argv[1] == "live":
    print("ended", get_client().stats()["spooled"], flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    trackd.flush(timeout=60)
"""


def _line(child: Child, word: str) -> list[str] | None:
    return next((line.split() for line in list(child.out) if line.startswith(word + " ")), None)


def _start(store: Path, daemon: DaemonProcess, spool_dir: Path, how: str) -> tuple[Child, str]:
    """The logger, started while ``daemon`` is stopped, once it has sent its points; and its run id."""
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0",
        TRACKD_EXIT_TIMEOUT="2", TRACKD_CONNECT_TIMEOUT="2",
    )
    child = Child(LOGGER, [how, str(spool_dir.parent / "go")], env)
    wait_for(lambda: _line(child, "sent") is not None or child.process.poll() is not None, 60, message="the points sent")
    run = _line(child, "run")
    assert run is not None and _line(child, "sent") is not None, child.stderr()
    return child, run[1]


def _ended(store: Path, run_id: str, status: str) -> Any:
    """The run as MLflow reads it, once it is in the store and ``status``."""
    wait_for(lambda: list(store.glob(f"*/{run_id}/meta.yaml")) and mlflow_run(store, run_id).info.status == status,
             timeout=30, message=f"run {run_id} in the store, {status}")
    return mlflow_run(store, run_id)



def _points_once(store: Path, run_id: str) -> None:
    assert steps_in_store(store, run_id) == list(range(POINTS)), "points lost, duplicated or out of order"
    assert len(metric_lines(store, run_id, "x")) == POINTS


@pytest.mark.timeout(120)
def test_a_process_killed_while_its_daemon_is_stopped_leaves_its_run_and_every_point(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    with daemon.paused():
        child, run_id = _start(store, daemon, tmp_path / "spool", "kill")
        assert child.wait(timeout=60) == -signal.SIGKILL, child.stderr()
    # The run, its param and every point, read by MLflow; and failed by the will it told first (3a).
    run = _ended(store, run_id, "FAILED")
    assert run.data.params == {"lr": "0.1"}
    history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(run_id, "x")
    assert sorted(m.step for m in history) == list(range(POINTS))
    _points_once(store, run_id)
    assert not list((tmp_path / "spool").glob("*.spool"))  # killed: nothing spooled, all from the socket


@pytest.mark.timeout(120)
def test_batches_sent_ahead_and_spooled_after_a_give_up_are_written_once(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    with daemon.paused():
        child, run_id = _start(store, daemon, spool_dir, "end")
        # end_run gives the stopped daemon up after TRACKD_EXIT_TIMEOUT: everything it had not
        # acknowledged, the batches sent ahead included, goes to the spool.
        assert child.wait(timeout=60) == 0, child.stderr()
    assert list(spool_dir.glob("*.spool")), child.stderr()
    # The resumed daemon reads the dropped connection: the run and its points, before any sync.
    wait_for(lambda: (store / "0" / run_id / "metrics" / "x").exists() and len(metric_lines(store, run_id, "x")) == POINTS,
             timeout=30, message="the points read from the dropped connection")
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 10, message="the daemon's backlog written")
    assert not list(spool_dir.glob("*.spool"))  # delivered: its batches skipped by their numbers
    _points_once(store, run_id)
    assert _ended(store, run_id, "FINISHED").data.params == {"lr": "0.1"}


@pytest.mark.timeout(120)
def test_batches_sent_ahead_and_spooled_are_written_once_when_the_process_resends_its_spool(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    with daemon.paused():
        child, run_id = _start(store, daemon, spool_dir, "live")
        wait_for(lambda: _line(child, "ended") is not None or child.process.poll() is not None, 60, message="the give-up")
        ended = _line(child, "ended")
        assert ended is not None and int(ended[1]) == POINTS + 3, child.stderr()  # creation, param, points, end
    # The daemon reads the dropped connection and the process's next one, which resends the spool.
    (tmp_path / "go").touch()
    assert child.wait(timeout=60) == 0, child.stderr()
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 10, message="the daemon's backlog written")
    _points_once(store, run_id)
    assert _ended(store, run_id, "FINISHED").data.params == {"lr": "0.1"}


# Starts a run, logs point 0, a file by path (argv[1], over the inline limit) (its snapshot goes to the media folder) and point 1,
# waits (at most 10 s) until its sender has sent ahead what may go, and prints its stats.
BY_PATH = """
import json, os, sys, time, trackd
from trackd.client import get_client
run = trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.log_artifact(sys.argv[1])
trackd.log_metric("x", 1.0, step=1)
deadline = time.monotonic() + 10
while not (stats := get_client().stats())["sent_seq"] and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)  # a few more of the handshake's checks: nothing more goes
stats = get_client().stats()
print("stats", json.dumps({k: stats[k] for k in ("sent_seq", "buffered")}), flush=True)
os._exit(0)
"""


@pytest.mark.timeout(120)
def test_a_file_logged_by_path_and_what_follows_it_wait_for_the_welcome(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Its media folder is removed as an orphan once the process is dead and the daemon lists no
    # session of it, which a daemon has only once it read the Hello: sent ahead, the copy could fail.
    source = tmp_path / "model.bin"
    with source.open("wb") as file:
        file.truncate(MAX_INLINE_ARTIFACT_SIZE + 1)  # over the inline limit: copied by path
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_AUTOSTART="0")
    with daemon.paused():
        child = Child(BY_PATH, [str(source)], env)
        assert child.wait(timeout=60) == 0, child.stderr()
    stats = _line(child, "stats")
    assert stats is not None, child.stderr()
    counts = json.loads(" ".join(stats[1:]))
    # The run's creation and point 0 went ahead in one batch; the file and point 1 waited in memory
    # (and died with the process: os._exit), and the daemon resumed wrote that batch.
    assert counts["sent_seq"] == 1 and counts["buffered"] >= 2, child.stderr()
    wait_for(lambda: list(store.glob("0/*/metrics/x")), timeout=30, message="the batch sent ahead written")
    (metric,) = store.glob("0/*/metrics/x")
    assert steps_in_store(store, metric.parent.parent.name) == [0]
