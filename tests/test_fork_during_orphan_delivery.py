"""A worker forked while its parent delivers an exited process's spool does not keep that spool locked.

The background delivery holds the spool file's lock while it sends the file. A flock belongs to
the open file, which a fork shares with the child (O_CLOEXEC helps at an exec only): a DataLoader's
workers forked in that moment kept the file locked for as long as they lived, after the delivery
had failed (the daemon went away) and let it go. `trackd sync` said the spool's "process is still
running" and left it, and so did every background delivery, until the workers exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, steps_in_store, wait_for
from test_spool import _old_spool

# Connects (which schedules the background delivery of the spool the test left), forks a worker
# that lives on when told (the delivery holds the spool then), and says when the delivery ended.
FORKS_DURING_THE_DELIVERY = """
import os, sys, threading, time, trackd
client = trackd.Client(sys.argv[1])
client.get_or_create_experiment("forks")
print("connected", flush=True)
sys.stdin.readline()
worker = os.fork()
if worker == 0:
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    time.sleep(120)
    os._exit(0)
print(worker, flush=True)
sys.stdin.readline()
deadline = time.monotonic() + 60
while any(thread.name == "trackd-spool-sync" for thread in threading.enumerate()) and time.monotonic() < deadline:
    time.sleep(0.05)
print("tried", flush=True)
sys.stdin.readline()
"""


def _lock_holder(path: Path) -> int | None:
    """The pid the kernel names as holding a flock on ``path`` (/proc/locks), or None."""
    info = os.stat(path)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return int(fields[4])
    return None


def test_a_worker_forked_during_an_orphan_delivery_leaves_the_spool_to_trackd_sync(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    run_id = "0123456789abcdef0123456789abcdef"
    orphan = _old_spool(spool_dir, store, run_id)
    daemon = DaemonProcess(socket_path).start()
    env = child_env(socket_path, TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0")
    parent = subprocess.Popen(
        [sys.executable, "-c", FORKS_DURING_THE_DELIVERY, str(store)], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    worker = 0
    try:
        assert parent.stdout is not None and parent.stdin is not None
        assert parent.stdout.readline() == "connected\n"
        # Stopped before the delivery's delay (2 s) ends: the delivery locks the spool, sends its
        # Hello and waits for the daemon's answer, holding the lock.
        daemon.signal(signal.SIGSTOP)
        wait_for(lambda: _lock_holder(orphan) is not None, timeout=30, message="the delivery to lock the spool")
        parent.stdin.write("\n")
        parent.stdin.flush()
        worker = int(parent.stdout.readline())
        daemon.kill()  # the delivery fails, and lets the spool go
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "tried\n"
        assert orphan.exists()
        holder = _lock_holder(orphan)  # the worker lives on

        daemon = DaemonProcess(socket_path).start()
        try:
            synced = subprocess.run(
                [sys.executable, "-m", "trackd", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
                env=env, capture_output=True, text=True, timeout=60,
            )
        finally:
            assert daemon.stop() == 0
        assert synced.returncode == 0, synced.stdout + synced.stderr
        # The old code: "... its process is still running", the file left, locked by the worker.
        assert (holder, orphan.exists()) == (None, False), synced.stdout + synced.stderr
        assert steps_in_store(store, run_id, "loss") == [0, 1, 2]
    finally:
        if worker:
            os.kill(worker, signal.SIGKILL)
        parent.kill()
        parent.communicate(timeout=30)
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
