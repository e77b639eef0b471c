"""A store the daemon said it could not write is not blamed once the daemon says it wrote.

The client keeps the store's sentence from a ``store_unavailable`` reply for the lines that say
why events wait (docs/protocol.md). The daemon's Welcome on a reconnect says too that it wrote
(``resume_seq``): the batches held for a full disk, written while this process could not reach
the daemon, are acknowledged by it, and no Ack follows for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for
from test_exit_line_daemon_answered import START

from trackd.client._control import query_status

pytestmark = pytest.mark.timeout(120)

# A run and its first point written; then the disk filled (a real ENOSPC for the store) and 1000
# points logged, which the daemon holds; flush(timeout=2) shows the client heard it. At each "go"
# on stdin: end_run (which gives the daemon up, spooling what it holds), then a run of one point,
# logged while the daemon is stopped (SIGSTOP), and exit.
CHILD = START + """
for step in range(1, 1000):
    trackd.log_metric("x", float(step), step=step)
try:
    trackd.flush(timeout=2)
except trackd.FlushTimeout as exc:
    print("timeout:", exc, flush=True)
sys.stdin.readline()
trackd.end_run()
print("ended", flush=True)
sys.stdin.readline()
trackd.start_run()
trackd.log_metric("y", 1.0)
"""


def test_a_store_written_while_this_process_was_away_is_not_blamed_at_exit(small_disk: Path, daemon: DaemonProcess) -> None:
    # The exit line said "the store at ... cannot be written (No space left on device) ..., so the
    # daemon at ... keeps the events it received" of a store written long before, when the daemon
    # was stopped (SIGSTOP) and had answered nothing: its Welcome said it had written them.
    store, filler, run_id = small_disk / "mlruns", small_disk / "filler", uuid.uuid4().hex
    sock = daemon.paths.socket
    # The child reaches the daemon through a link, removed while it must not: renaming the socket
    # itself no longer does, the daemon makes a removed socket file again within a second.
    link = sock.with_name("link.sock")
    link.symlink_to(sock)
    env = child_env(
        link, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="2", TRACKD_AUTOSTART="0",
        TRACKD_SPOOL_DIR=str(small_disk.parent / "spool"),
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, run_id, str(filler)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stopped = False
    try:
        assert child.stdout is not None and child.stdin is not None and child.stderr is not None
        assert child.stdout.readline().startswith("timeout: The store at "), "the client heard the store is full"
        link.unlink()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ended\n"
        filler.unlink()
        wait_for(lambda: query_status(sock)["backlog_records"] == 0, 60, message="the daemon to write what it held")
        link.symlink_to(sock)
        lines: list[str] = []
        while not (lines and "reconnected" in lines[-1]):
            line = child.stderr.readline()
            assert line, "\n".join(lines)
            lines.append(line)
        daemon.signal(signal.SIGSTOP)
        stopped = True
        child.stdin.write("go\n")
        child.stdin.flush()
        _, rest = child.communicate(timeout=60)
        err = "".join(lines) + rest
    finally:
        if stopped:
            daemon.signal(signal.SIGCONT)
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 0, err
    after = err[err.index("reconnected"):].splitlines()[1:]
    # The run's creation, its point and its end, sent to the stopped daemon.
    assert after[-1].startswith(f"trackd: 3 events were not delivered: the daemon at {link} did not answer within 2 s;"), err
    assert not any("No space left" in line for line in after), err
