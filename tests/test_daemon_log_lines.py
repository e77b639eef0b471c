"""The daemon's log says what happened to each client, one line per happening.

Real client processes against a real daemon: one that runs to its end, one killed with SIGKILL
holding a run, one refused at connect; the test reads the daemon's log file as a user would.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, RawClient, child_env, wait_for

from trackd.protocol import Welcome

# Every line of the log file is one record: a timestamp, a level, the daemon's pid, what happened.
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) pid \d+ \S")

# Starts a run, logs three points, delivers them, prints the run id, then waits for stdin.
CHILD = """
import sys, trackd
trackd.set_tracking_uri({store!r})
run = trackd.start_run()
for step in range(3):
    trackd.log_metric("loss", 0.5, step=step)
trackd.flush()
print(run.info.run_id, flush=True)
sys.stdin.readline()
trackd.end_run()
"""


def start_child(store: Path, socket_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(store=str(store))], env=child_env(socket_path, TRACKD_AUTOSTART="0", **env),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert run_id, child.communicate(timeout=30)[1]
    return child, run_id


def lines_of(daemon: DaemonProcess, pid: int) -> list[str]:
    lines = daemon.log().splitlines()
    assert all(LINE.match(line) for line in lines), daemon.log()
    return [line for line in lines if f"pid {pid}@" in line or f"from pid {pid}:" in line]


def test_a_client_that_ends_its_run_and_exits_is_said_to_leave_nothing_behind(daemon: DaemonProcess, store: Path) -> None:
    # Its line said only "disconnected", as a killed client's did.
    child, _ = start_child(store, daemon.paths.socket)
    _, err = child.communicate("\n", timeout=30)
    assert child.returncode == 0, err
    wait_for(lambda: any("disconnected" in line for line in lines_of(daemon, child.pid)), 20, message="its disconnect line")
    connected, disconnected = lines_of(daemon, child.pid)
    assert f" client pid {child.pid}@" in connected and " connected (client " in connected, connected
    assert re.search(r"disconnected: \d+ events received from it, none waiting to be written$", disconnected), disconnected


def test_a_sigkilled_client_is_said_to_leave_its_run_not_ended(daemon: DaemonProcess, store: Path) -> None:
    # Its line said "disconnected", word for word as a client that had ended its run.
    child, run_id = start_child(store, daemon.paths.socket)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    wait_for(lambda: f"Marked run {run_id} FAILED" in daemon.log(), 20, message="its run failed")
    [disconnected] = [line for line in lines_of(daemon, child.pid) if " disconnected: " in line]
    assert disconnected.endswith(
        f"none waiting to be written; it had not ended 1 run ({run_id}): marked FAILED once its process has exited "
        "if it is RUNNING in the store then, unless it reconnects"
    ), disconnected


def test_a_refused_client_is_named_by_its_pid_and_the_limit_in_words(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # It said "Refused a connection (too_many_connections): The trackd daemon already serves 1
    # connections", naming neither the process refused nor a count in words.
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    holder = RawClient(socket_path)
    try:
        assert isinstance(holder.hello(str(store)), Welcome)
        refused = subprocess.Popen(
            [sys.executable, "-c", f"import trackd\ntrackd.set_tracking_uri({str(store)!r})\ntrackd.log_param('a', 1)\n"],
            # Refused, it spools its param: into a folder of its own, not the session's (a later
            # test's client would deliver it, or a glob of that folder find it).
            env=child_env(
                socket_path, TRACKD_AUTOSTART="0", TRACKD_EXIT_TIMEOUT="1", TRACKD_CONNECT_TIMEOUT="1",
                TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        _, err = refused.communicate(timeout=60)
    finally:
        holder.close()
        assert daemon.stop() == 0, daemon.log()
    assert "already serves 1 connection, its limit" in err, err
    [line] = lines_of(daemon, refused.pid)
    assert line.endswith(
        f"Refused a connection (too_many_connections) from pid {refused.pid}: The trackd daemon already serves 1 "
        "connection, its limit (--max-connections 1); close idle clients or raise the limit. (logged once per "
        "process; status counts the refusals)"
    ), line
