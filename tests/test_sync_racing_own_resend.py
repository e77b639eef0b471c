"""`trackd sync` run again and again while the process that wrote the spool resends it itself.

A process that found no daemon spools its events; when a daemon appears its sender thread resends
the spool and deletes it. A user (or a cron job) running `trackd sync` in that same moment must
neither deliver the file a second time nor take it from the live process: every point is in the
store once, and the process's own flush succeeds.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for
from test_spool import _spool_files

from trackd.store import StoreReader

POINTS = 30_000

# Logs while no daemon answers (so it spools), in bursts so that the spool grows over several
# spills, then waits for its own delivery.
LOGGER = """
import sys, time, trackd
with trackd.start_run() as run:
    print(run.run_id, flush=True)
    trackd.log_param("lr", "0.1")
    for step in range({points}):
        trackd.log_metric("loss", float(step), step=step)
        if step % 1000 == 999:
            time.sleep(0.05)
    trackd.flush(timeout=90)
    print("flushed", flush=True)
"""


def _spooling_env(socket_path: Path, store: Path, spool_dir: Path) -> dict[str, str]:
    """A child's environment with no daemon to start: it spools until one appears at ``socket_path``."""
    return child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
                     TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_AUTOSTART="0")


@pytest.mark.timeout(180)
def test_trackd_sync_in_a_loop_while_the_process_resends_its_own_spool_writes_each_point_once(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = _spooling_env(socket_path, store, spool_dir)
    child = subprocess.Popen([sys.executable, "-c", LOGGER.format(points=POINTS)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[0]
    wait_for(lambda: bool(_spool_files(spool_dir)), 30, message="the child to spool")
    time.sleep(0.3)

    syncs: list[subprocess.CompletedProcess[str]] = []
    stop = threading.Event()

    def sync_until_stopped() -> None:
        # As a user's cron job would: the same command, again and again, each its own process.
        while not stop.is_set():
            syncs.append(subprocess.run(
                [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
                env=child_env(socket_path), capture_output=True, text=True, timeout=60,
            ))

    daemon = DaemonProcess(socket_path).start()
    threads = [threading.Thread(target=sync_until_stopped) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        out, err = child.communicate(timeout=120)
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        assert child.returncode == 0 and "flushed" in out, err
        assert syncs, "no trackd sync ran"
        for sync in syncs:
            assert sync.returncode == 0, sync.stdout + sync.stderr
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(POINTS))
        run = StoreReader(store).get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
        assert _spool_files(spool_dir) == []
    finally:
        stop.set()
        if child.poll() is None:
            child.kill()
        assert daemon.stop() == 0


@pytest.mark.timeout(180)
def test_two_syncs_and_a_new_process_racing_for_an_exited_process_spool_write_each_point_once(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = _spooling_env(socket_path, store, spool_dir)
    # The first process exits without a daemon: its flush fails, its events stay in its spool.
    first = subprocess.run([sys.executable, "-c", LOGGER.format(points=POINTS).replace("timeout=90", "timeout=1")],
                           env=env, capture_output=True, text=True, timeout=90)
    run_id = first.stdout.split()[0]
    assert "spooled to" in first.stderr, first.stderr
    assert len(_spool_files(spool_dir)) == 1

    daemon = DaemonProcess(socket_path).start()
    try:
        sync_command = [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)]
        # Two syncs and a process whose connect delivers the leftover spool in the background,
        # all started at once.
        late = """
import time, trackd
with trackd.start_run():
    trackd.log_metric("other", 1.0)
    time.sleep(2)
trackd.flush(timeout=60)
"""
        racers = [subprocess.Popen(sync_command, env=child_env(socket_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]
        racers.append(subprocess.Popen([sys.executable, "-c", late], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))
        outputs = [racer.communicate(timeout=90) for racer in racers]
        for racer, (out, err) in zip(racers, outputs):
            assert racer.returncode == 0, out + err
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(POINTS))
        assert StoreReader(store).get_run(run_id).data.params == {"lr": "0.1"}
        wait_for(lambda: _spool_files(spool_dir) == [], 30, message="the spool to be removed by whoever delivered it")
    finally:
        assert daemon.stop() == 0
