"""A client tells its runs with its Hello, before the daemon answers: an owner killed while its daemon is stalled leaves a will.

Seen in a chaos run (round 4400-38): rank 0 of a shared run, SIGKILLed while its daemon was
SIGSTOPped, left the run RUNNING for ever, although the daemon was then stopped gracefully. The
client sent nothing between ``Hello`` and ``Welcome``, so the daemon read the rank's Hello and
then its end ("0 events received from it"): the ``OwnedRuns`` naming the run was still in the
killed process. Rank 1 had created the run, so it existed, and rank 1 only detaches.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import DaemonProcess, child_env, wait_for
from test_wills import mlflow_run, wait_until_no_will_is_pending


RANK_CHILD = """
import sys, trackd
trackd.set_tracking_uri({store!r})
run = trackd.start_run(run_id={run_id!r})
trackd.log_metric("loss", 1.0, step=0)
{rest}
"""


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds (its connection to the daemon)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return set()
    return {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}


def send_queue(inodes: set[str]) -> int:
    """What ``ss`` shows as the Send-Q of those Unix sockets: the kernel's memory for the bytes
    sent on them and not read yet, a fixed amount per small write (skb truesize), not their size."""
    rows = [line.split() for line in subprocess.run(["ss", "-xH"], capture_output=True, text=True).stdout.splitlines()]
    return sum(int(row[3]) for row in rows if len(row) >= 6 and row[5] in inodes)


def one_small_write() -> int:
    """The Send-Q of one unread small write (a frame such as a Hello), measured on a socket pair."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        left.sendall(b"\0" * 160)
        return send_queue({str(os.fstat(left.fileno()).st_ino)})


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see what waits in the daemon's socket")
def test_rank_0_killed_while_its_daemon_had_not_answered_leaves_the_shared_run_failed(
    socket_path: Path, store: Path
) -> None:
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(socket_path).start()
    env = child_env(socket_path, TRACKD_AUTOSTART="0")
    rank_1 = subprocess.run(
        [sys.executable, "-c", RANK_CHILD.format(store=str(store), run_id=run_id, rest="trackd.flush()")],
        env={**env, "RANK": "1"}, capture_output=True, text=True, timeout=60,
    )
    assert rank_1.returncode == 0, rank_1.stderr  # created the run, and only detached from it
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    daemon.signal(signal.SIGSTOP)  # it reads nothing: the rank's Hello waits in the socket
    rank_0 = subprocess.Popen(
        [sys.executable, "-c", RANK_CHILD.format(store=str(store), run_id=run_id, rest="print('started', flush=True)\nsys.stdin.readline()")],
        env={**env, "RANK": "0"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    next_daemon = None
    try:
        assert rank_0.stdout is not None and rank_0.stdout.readline().strip() == "started"
        # Two writes wait in the socket, its Hello and its runs (no batch goes before the Welcome).
        # Killed before the second, a process has told nothing (docs/multiprocessing.md, Not covered).
        single = one_small_write()
        wait_for(lambda: send_queue(socket_inodes(rank_0.pid)) >= 2 * single, timeout=20, message="rank 0's runs sent")
        rank_0.kill()
        assert rank_0.wait(30) == -signal.SIGKILL
        daemon.signal(signal.SIGCONT)
        stop = subprocess.run(
            [sys.executable, "-m", "trackd", "daemon", "stop", "--timeout", "20"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert daemon.stop() == 0  # stopped already: only waited for
        next_daemon = DaemonProcess(socket_path).start()  # takes on the wills the first one left
        wait_until_no_will_is_pending(next_daemon)
        assert mlflow_run(store, run_id).info.status == "FAILED", daemon.log()
    finally:
        if rank_0.poll() is None:
            rank_0.kill()
        rank_0.communicate(timeout=30)
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.signal(signal.SIGCONT)
            daemon.stop()
        if next_daemon is not None:
            assert next_daemon.stop() == 0
