"""A spill to a slow spool disk while a thread logs faster than it writes ends, and a daemon that
comes back is reconnected to.

The sender thread writes the spool file outside its lock, so logging calls refill the buffer
while it writes. Its spill went on until the buffer was empty, which a thread logging faster than
the disk writes never left: the spill never ended and the thread never tried to connect again. A
daemon started meanwhile was not reconnected to for as long as the loop ran (a flush() waited 25 s
and then raised "No trackd daemon answers" about a daemon that had answered all along). The disk
is made slow with strace, each write() of the sender thread half a second longer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, metric_lines

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

# Logs in a thread, without pause, while no daemon answers and each write() of the sender thread
# takes 0.5 s more; once something is spooled it says so (the test starts a daemon then) and logs
# on until the client is connected, or 60 s. Then it stops the loop, closes, and says how it went.
LOG_FASTER_THAN_THE_SPOOL_DISK = """
import os, subprocess, threading, time, trackd
from pathlib import Path
from trackd.client import get_client
run = trackd.start_run()
client = get_client()
sender = next(thread for thread in threading.enumerate() if thread.name == "trackd-sender")
tracer = subprocess.Popen([
    "strace", "-qq", "-p", str(sender.native_id), "-e", "trace=write", "-e", "inject=write:delay_exit=500000",
    "-o", "/dev/null",
])
status = Path(f"/proc/self/task/{sender.native_id}/status")
deadline = time.monotonic() + 10
while "TracerPid:\\t0\\n" in status.read_text():
    if time.monotonic() > deadline or tracer.poll() is not None:
        print("no-strace", flush=True)
        os._exit(0)
    time.sleep(0.05)
stop = threading.Event()
logged = 0
def loop():
    global logged
    while not stop.is_set():
        trackd.log_metric("x", float(logged), step=logged)
        logged += 1
thread = threading.Thread(target=loop)
thread.start()
while not client.stats()["spooled"]:
    time.sleep(0.01)
print("spooling", flush=True)
deadline = time.monotonic() + 60
while not client.stats()["connected"] and time.monotonic() < deadline:
    time.sleep(0.05)
connected = client.stats()["connected"]
stop.set()
thread.join()
tracer.terminate()
tracer.wait()
trackd.end_run()
client.close(timeout=120)
print(connected, logged, client.stats()["dropped"], run.info.run_id, flush=True)
"""


def test_a_daemon_that_comes_back_is_reconnected_to_while_a_thread_outlogs_the_spool_disk(
    socket_path: Path, store: Path, tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_TRACKING_URI=str(store),
        TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="1000000",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", LOG_FASTER_THAN_THE_SPOOL_DISK], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    daemon = DaemonProcess(socket_path)
    try:
        assert child.stdout is not None
        first = child.stdout.readline().strip()
        if first == "no-strace":
            pytest.skip("strace cannot attach to a thread of the child here (ptrace not allowed)")
        assert first == "spooling", child.communicate(timeout=30)[1][-3000:]
        daemon.start()
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()  # nothing once it has exited
        child.wait()
        if daemon.process is not None:
            daemon.stop()
    assert child.returncode == 0, err[-3000:]
    connected, logged, dropped, run_id = out.split()
    # This used to stay False: the spill never ended while the loop logged, so no attempt to connect was made.
    assert connected == "True", err[-3000:]
    # Every point the buffer took is in the store once, in the order logged: the spool's, then the rest.
    steps = [int(line.split()[2]) for line in metric_lines(store, run_id, "x")]
    assert steps == sorted(set(steps))
    assert len(steps) + int(dropped) == int(logged)
