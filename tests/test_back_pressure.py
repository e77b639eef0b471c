"""Back-pressure is not trouble: a loop that logs faster than a healthy daemon writes, or through a
daemon restart, waits for room without a word; the line comes when the daemon says nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for

# Logs "loss" as fast as it can (default buffer and policy, block) until its calls have waited
# WAITED seconds for room in all, and, if a file is named, until that file exists first; then
# flushes and prints how many points it logged.
LOOP = """
import os, sys
from trackd import Client
waited, after = float(sys.argv[1]), sys.argv[2]
client = Client(os.environ["TRACKD_TRACKING_URI"])
run_id, step = client.create_run("0").info.run_id, 0
print("run", run_id, flush=True)
# (At most 20 M points, ~500 MB of store, should a slow machine's daemon keep up with the loop.)
while ((after and not os.path.exists(after)) or client.stats()["blocked_s"] < waited) and step < 20_000_000:
    for _ in range(10_000):
        client.log_metric(run_id, "loss", 0.5, step=step)
        step += 1
client.flush(timeout=120)
print("logged", step, client.stats()["blocked_s"], flush=True)
client.close()
"""


def _loop(socket_path: Path, store: Path, waited: float, after: Path | None = None, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOOP, str(waited), str(after or "")],
        env=child_env(socket_path, TRACKD_TRACKING_URI=str(store), **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stored(store: Path, run_id: str) -> int:
    with open(store / "0" / run_id / "metrics" / "loss", "rb") as lines:
        return sum(1 for _ in lines)


@pytest.mark.timeout(240)
def test_a_loop_faster_than_a_healthy_daemon_waits_for_room_without_a_warning(
    socket_path: Path, store: Path, daemon: DaemonProcess
) -> None:
    # A loop of a few million points at full speed (the daemon writes ~1 M points/s) printed
    # "logging calls have waited 1 s for room: ... because the daemon is not keeping up": the
    # back-pressure the block policy asks for, beside a daemon acknowledging all the while.
    child = _loop(socket_path, store, 1.2, TRACKD_AUTOSTART="0")
    out, err = child.communicate(timeout=200)
    assert child.returncode == 0, err
    assert err == "", err  # the calls waited 1.2 s in all (the loop ran until they had)
    run_id, logged = out.split()[1], int(out.split()[3])
    assert _stored(store, run_id) == logged


@pytest.mark.timeout(240)
def test_a_daemon_restart_in_the_middle_of_a_loop_is_not_blamed_on_the_daemon(
    socket_path: Path, store: Path, tmp_path: Path, daemon: DaemonProcess
) -> None:
    # `trackd daemon stop` while a loop logs at full speed (autostart starts the next daemon):
    # the calls waited while the daemon shut down and its successor started, and the line said
    # "the daemon is not keeping up". A restart is said, if at all, as one.
    stopped = tmp_path / "stopped"
    child = _loop(socket_path, store, 1.2, stopped)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().split()[1]
        metric = store / "0" / run_id / "metrics" / "loss"
        wait_for(lambda: metric.exists() and metric.stat().st_size > 1_000_000, 60, message="the loop under way")
        stop = subprocess.run(
            [sys.executable, "-m", "trackd", "daemon", "stop"], env=child_env(socket_path), capture_output=True, text=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stderr
        stopped.touch()
        out, err = child.communicate(timeout=200)
    finally:
        if child.poll() is None:
            child.kill()
        # The daemon the child started in its place.
        subprocess.run([sys.executable, "-m", "trackd", "daemon", "stop"], env=child_env(socket_path), timeout=60)
    assert child.returncode == 0, err
    assert "not keeping up" not in err, err
    # (A restart that leaves the calls without a reply for 2 s is said, as one.)
    assert all("shut down (" in line or "shutting down (" in line for line in err.splitlines() if "waiting for room" in line), err
    assert _stored(store, run_id) == int(out.split()[1])
