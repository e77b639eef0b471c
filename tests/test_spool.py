"""No daemon can be reached: events go to a spool file and reach the store later, exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python, wait_for

from trackd.store import RunStatus, StoreReader

POINTS = 10_000

LOGGER = """
import trackd
with trackd.start_run() as run:
    print(run.run_id, flush=True)
    trackd.log_param("lr", "0.1")
    for step in range({points}):
        trackd.log_metric("loss", float(step), step=step)
"""


def _spool_files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.spool")) if spool_dir.is_dir() else []


@pytest.mark.timeout(120)
def test_events_are_spooled_when_no_daemon_can_start_and_trackd_sync_delivers_them(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # A file where the runtime directory should be: no daemon can ever start there.
    blocker = Path(str(socket_path.parent) + "-blocker")
    blocker.write_text("not a directory")
    spool_dir = tmp_path / "spool"
    env = child_env(
        blocker / "d.sock", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="1",
    )
    try:
        result = run_python(LOGGER.format(points=POINTS), env)
    finally:
        blocker.unlink()
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[0]
    assert "events spooled to" in result.stderr
    assert len(_spool_files(spool_dir)) == 1
    assert StoreReader(store).find_run(run_id) is None

    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
        env=child_env(socket_path), capture_output=True, text=True, timeout=60,
    )
    try:
        assert sync.returncode == 0, sync.stderr
        assert "delivered" in sync.stdout
        assert _spool_files(spool_dir) == []
        run = StoreReader(store).get_run(run_id)
        assert run.info.status == RunStatus.FINISHED
        assert run.data.params == {"lr": "0.1"}
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(POINTS))
    finally:
        subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", str(socket_path)], timeout=60)


@pytest.mark.timeout(120)
def test_a_running_process_delivers_its_own_spool_when_a_daemon_appears(socket_path: Path, store: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    code = """
import sys, time, trackd
with trackd.start_run() as run:
    print(run.run_id, flush=True)
    for step in range(30_000):
        trackd.log_metric("loss", float(step), step=step)
        if step % 1000 == 999:
            time.sleep(0.1)
    trackd.flush(timeout=60)
    print("flushed", flush=True)
"""
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
                    TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_AUTOSTART="0")
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[0]
    wait_for(lambda: bool(_spool_files(spool_dir)), 30, message="the child to spool")
    time.sleep(0.5)
    daemon = DaemonProcess(socket_path).start()
    try:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0 and "flushed" in out, err
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(30_000))
        assert _spool_files(spool_dir) == []
    finally:
        if child.poll() is None:
            child.kill()
        assert daemon.stop() == 0
