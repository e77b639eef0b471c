"""A worker forked while the sender thread opens its spool file does not keep that file locked.

The sender thread opens the spool file, then waits for its lock (flock), then writes its Hello; it
kept the descriptor as its own only once all that was done. A worker forked in between (a
DataLoader's, a Pool's: a spool folder on NFS makes the lock slow) inherited the descriptor, which
the at-fork hook did not know of, and with it the lock once its parent took it: after the parent
exited, `trackd sync` said the spool's "process is still running" and left it for as long as the
worker lived. Here the lock is slow because the process itself holds it on another descriptor
until the worker is forked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from test_fork_during_orphan_delivery import _lock_holder
from test_slow_spool_disk import _env

# Locks its own spool file on a descriptor of its own, logs, waits until the sender thread has the
# file open too (waiting for the lock), forks a worker that sleeps, lets the lock go, and exits
# once the points are spooled; prints the worker's pid and the spool file's path.
FORKS_WHILE_THE_SPOOL_FILE_OPENS = """
import fcntl, os, time, trackd
from pathlib import Path
from trackd.client import get_client
run = trackd.start_run()
client = get_client()
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
mine = os.open(spool, os.O_WRONLY | os.O_CREAT, 0o600)
fcntl.flock(mine, fcntl.LOCK_EX)
for step in range(100):
    trackd.log_metric("x", float(step), step=step)
def opened_by_another() -> bool:
    return any(
        int(fd) != mine and os.readlink(f"/proc/self/fd/{fd}") == str(spool)
        for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")
    )
deadline = time.monotonic() + 60
while not opened_by_another():
    assert time.monotonic() < deadline, "the sender thread never opened the spool file"
    time.sleep(0.005)
worker = os.fork()
if worker == 0:
    os.close(mine)  # the test's own lock: not the worker's to keep
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    time.sleep(120)
    os._exit(0)
os.close(mine)
while not client.stats()["spooled"]:
    time.sleep(0.01)
print(worker, spool, flush=True)
os._exit(0)
"""


def test_a_worker_forked_while_the_spool_file_opens_leaves_it_unlocked(socket_path: Path, store: Path, tmp_path: Path) -> None:
    env = _env(socket_path, store, tmp_path, TRACKD_CONNECT_TIMEOUT="0.2")
    result = subprocess.run(
        [sys.executable, "-c", FORKS_WHILE_THE_SPOOL_FILE_OPENS], env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    worker, spool = result.stdout.split()
    try:
        # Its process has exited: nothing holds its spool file. The worker held it with the old code.
        assert _lock_holder(Path(spool)) is None
    finally:
        os.kill(int(worker), signal.SIGKILL)
