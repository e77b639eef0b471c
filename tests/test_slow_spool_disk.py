"""A spool folder on a slow or hung disk costs no logging call its wait, and exit and SIGTERM end.

The spool folder defaults to ~/.cache/trackd/spool, on NFS on many clusters. The sender thread
used to hold its lock while it opened, locked and wrote the spool file, and everything else that
takes that lock waited for the disk with it: a logging call under TRACKD_ON_FULL=drop, stats(),
and the bounded waits of exit and SIGTERM (TRACKD_EXIT_TIMEOUT=2 took as long as the disk did,
20 s under a 20 s delay). Here the spool file is a FIFO that no one reads: its open never returns.
What the stuck spill took is counted, and said at exit to be on its way to the spool file, lost
unless that write completes, never in the spool nor missing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

# 100 points, then the child's own spool file made a FIFO before anything is spooled (the client
# spools only once no daemon has answered for TRACKD_CONNECT_TIMEOUT, or its buffer is half full).
LOG_THEN_HANG_THE_SPOOL = """
import os, threading, time, trackd
from trackd.client import get_client
from pathlib import Path
run = trackd.start_run()
for step in range(100):
    trackd.log_metric("x", float(step), step=step)
client = get_client()
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
os.mkfifo(spool, 0o600)  # opened for writing, it waits for a reader: none comes
"""

EXIT = LOG_THEN_HANG_THE_SPOOL + 'print("exiting", flush=True)\n'

SIGTERM = LOG_THEN_HANG_THE_SPOOL + """
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""

# Logs past the buffer's bound (drop) until the sender thread waits in the spool file's open, then
# 10,000 more calls, each of which drops a point under the sender's lock; then what stats() says.
DROP_UNTIL_STUCK = """
sender = next(thread for thread in threading.enumerate() if thread.name == "trackd-sender")
def in_fifo_open():
    try:
        return Path(f"/proc/self/task/{sender.native_id}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False
deadline = time.monotonic() + 60
while not in_fifo_open():
    if time.monotonic() > deadline:
        print("never-stuck", flush=True)
        os._exit(0)
    for _ in range(100):
        trackd.log_metric("x", float(logged), step=logged)
        logged += 1
    time.sleep(0.001)
for _ in range(10_000):
    trackd.log_metric("x", float(logged), step=logged)
    logged += 1
stats = client.stats()
print(logged, client.pending(), stats["dropped"], stats["spooled"], in_fifo_open(), flush=True)
os._exit(0)
"""

DROP_WHILE_THE_SPILL_HANGS = LOG_THEN_HANG_THE_SPOOL + "logged = 100\n" + DROP_UNTIL_STUCK

# No daemon: logs until the client has spooled, then puts a FIFO in its spool file's place (the
# client writes on to the file it has open) and says so; the test starts a daemon, and the client,
# connected, opens the spool file to send it again: that open never returns.
DROP_WHILE_THE_RESEND_HANGS = """
import os, threading, time, trackd
from pathlib import Path
from trackd.client import get_client
run = trackd.start_run()
client = get_client()
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
logged = 0
while not client.stats()["spooled"]:
    for _ in range(100):
        trackd.log_metric("x", float(logged), step=logged)
        logged += 1
    time.sleep(0.01)
os.rename(spool, spool.with_name("written.aside"))
os.mkfifo(spool, 0o600)
print("spooled", flush=True)
""" + DROP_UNTIL_STUCK

# The points, the run's creation, and its end at exit.
EVENTS = 102


def _env(socket_path: Path, store: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    return child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_TRACKING_URI=str(store), **extra,
    )


def _finish(child: subprocess.Popen[str], what: str) -> tuple[str, str]:
    """The child's output once it exits; the test fails if it does not while its spool open hangs."""
    try:
        return child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"{what} did not end while the spool file's open hung: {err[-2000:]}")


def test_exit_ends_within_its_timeout_while_the_spool_file_does_not_open(socket_path: Path, store: Path, tmp_path: Path) -> None:
    env = _env(socket_path, store, tmp_path, TRACKD_EXIT_TIMEOUT="2", TRACKD_CONNECT_TIMEOUT="60")
    child = subprocess.Popen([sys.executable, "-c", EXIT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = _finish(child, "exit")
    assert child.returncode == 0, err
    # Taken for the spool file and stuck on their way there: said once, every one of them, to be lost
    # unless that write completes (its whole frames are delivered; the process ends it).
    assert f"{EVENTS} events were not delivered" in err and "still being written to the spool file" in err, err


def test_sigterm_ends_while_the_spool_file_does_not_open(socket_path: Path, store: Path, tmp_path: Path) -> None:
    env = _env(socket_path, store, tmp_path, TRACKD_EXIT_TIMEOUT="2", TRACKD_CONNECT_TIMEOUT="60")
    child = subprocess.Popen([sys.executable, "-c", SIGTERM], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    out, err = _finish(child, "SIGTERM")
    assert child.returncode == -signal.SIGTERM, err
    assert f"{EVENTS} events were not delivered" in err and "still being written to the spool file" in err, err


def test_dropping_calls_return_while_the_spool_file_does_not_open(socket_path: Path, store: Path, tmp_path: Path) -> None:
    env = _env(
        socket_path, store, tmp_path, TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="2000", TRACKD_CONNECT_TIMEOUT="1",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", DROP_WHILE_THE_SPILL_HANGS], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = _finish(child, "a loop of log_metric under TRACKD_ON_FULL=drop")
    assert child.returncode == 0, err
    if out.strip() == "never-stuck":
        pytest.skip("this kernel does not show where a thread waits (/proc/<pid>/task/<tid>/wchan)")
    logged, pending, dropped, spooled, stuck = out.split()
    assert stuck == "True" and int(spooled) == 0  # the spill still waits for the file
    assert int(dropped) > 0
    # Each point is pending (buffered, or on its way to the spool file) or dropped, and only one
    # of the two; the run's creation is never dropped.
    assert int(pending) + int(dropped) == int(logged) + 1


def test_dropping_calls_return_while_the_resend_cannot_open_the_spool_file(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    env = _env(
        socket_path, store, tmp_path, TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="2000", TRACKD_CONNECT_TIMEOUT="1",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", DROP_WHILE_THE_RESEND_HANGS], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    daemon = DaemonProcess(socket_path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "spooled\n"
        daemon.start()
        out, err = _finish(child, "a loop of log_metric under TRACKD_ON_FULL=drop")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        if daemon.process is not None:
            daemon.stop()
    assert child.returncode == 0, err
    if out.strip() == "never-stuck":
        pytest.skip("this kernel does not show where a thread waits (/proc/<pid>/task/<tid>/wchan)")
    logged, pending, dropped, spooled, stuck = out.split()
    assert stuck == "True" and int(spooled) > 0  # the resend still waits for the file
    assert int(dropped) > 0
    assert int(pending) + int(dropped) == int(logged) + 1
