"""A daemon whose socket file is removed (a user's `rm`, a temp-file cleaner) listens again on a new
one; one whose socket path is taken by another file shuts down gracefully; and what the CLI says of
a daemon that holds its lock with no socket file, before it heals or when it never does.

It used to run on unreachable: connected clients carried on, a new process waited 10 s for a daemon
"starting", `trackd daemon status` said it was "starting, stopping or hung", `trackd daemon stop`
signalled nothing, and only `kill` by hand ended it. Real daemon processes, real client processes,
the real CLI, and MLflow reading the store back.
"""

from __future__ import annotations

import json
import shutil
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, alive, child_env, run_python, wait_for
from mlflow.tracking import MlflowClient

from trackd.client._launcher import daemon_answers

# Logs 100 points and flushes, says "ready", and at a line on stdin logs 100 more on the same
# connection, flushes, ends its run and exits.
CONNECTED = """
import sys, trackd
trackd.set_tracking_uri({store!r})
run = trackd.start_run()
for step in range(100):
    trackd.log_metric("a", step, step=step)
trackd.flush()
print(run.info.run_id, flush=True)
sys.stdin.readline()
for step in range(100, 200):
    trackd.log_metric("a", step, step=step)
trackd.flush()
trackd.end_run()
"""

# A new process, which may not start a daemon of its own (TRACKD_AUTOSTART=0): logs 50 points.
NEWCOMER = """
import trackd
trackd.set_tracking_uri({store!r})
trackd.set_experiment("after-rm")
with trackd.start_run() as run:
    for step in range(50):
        trackd.log_metric("b", step, step=step)
print(run.info.run_id)
"""


def cli(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", *args, "--socket", str(socket_path)],
        capture_output=True, text=True, timeout=60,
    )


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def test_removed_socket_file_is_made_again_and_old_and_new_clients_log_to_the_same_daemon(
    daemon: DaemonProcess, socket_path: Path, tmp_path: Path
) -> None:
    store = tmp_path / "mlruns"
    connected = subprocess.Popen(
        [sys.executable, "-c", CONNECTED.format(store=str(store))], env=child_env(socket_path, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert connected.stdout is not None
    first_run = connected.stdout.readline().strip()
    assert first_run, connected.communicate(timeout=30)[1]

    socket_path.unlink()
    # This used to wait for ever: nothing made the socket file again.
    wait_for(lambda: is_socket(socket_path) and daemon_answers(socket_path, 0.5), timeout=15, message="a new socket file")

    newcomer = run_python(NEWCOMER.format(store=str(store)), child_env(socket_path, TRACKD_AUTOSTART="0"))
    assert newcomer.returncode == 0, newcomer.stderr
    assert "spool" not in newcomer.stderr, newcomer.stderr
    out, err = connected.communicate("go\n", timeout=60)
    assert connected.returncode == 0, err
    assert "reconnect" not in err and "spool" not in err, err  # its connection carried on

    assert daemon.status()["pid"] == daemon.pid
    assert "was removed; listening again on a new one" in daemon.log()
    mlflow = MlflowClient(tracking_uri=str(store))
    assert [m.value for m in mlflow.get_metric_history(first_run, "a")] == list(range(200))
    second_run = newcomer.stdout.strip()
    assert [m.value for m in mlflow.get_metric_history(second_run, "b")] == list(range(50))
    assert mlflow.get_run(second_run).info.status == "FINISHED"


def test_status_shows_the_daemon_once_its_removed_socket_file_is_made_again(daemon: DaemonProcess, socket_path: Path) -> None:
    socket_path.unlink()
    wait_for(lambda: daemon_answers(socket_path, 0.5), timeout=15, message="a new socket file")
    result = cli(socket_path, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pid"] == daemon.pid


@pytest.fixture
def holding_daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    """A daemon that holds events for ten minutes (--max-age 600) unless a flush asks for them."""
    daemon = DaemonProcess(socket_path, "--max-age", "600").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def older_daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    """A daemon that never makes its socket file again, as before this fix: it looks once an hour."""
    daemon = DaemonProcess(socket_path, preamble="import trackd.daemon._listener as listener\nlistener.WATCH_INTERVAL = 3600.0")
    yield daemon.start()
    daemon.stop()


def test_daemon_whose_socket_path_is_taken_by_another_file_shuts_down_and_writes_what_it_held(
    holding_daemon: DaemonProcess, socket_path: Path, tmp_path: Path
) -> None:
    # Events from a process killed before any flush: only the daemon's graceful shutdown writes them.
    daemon = holding_daemon
    store = tmp_path / "mlruns"
    code = f"""
import sys, trackd
trackd.set_tracking_uri({str(store)!r})
run = trackd.start_run()
for step in range(300):
    trackd.log_metric("held", step, step=step)
print(run.info.run_id, flush=True)
sys.stdin.readline()
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(socket_path, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    # Everything it logged has reached the daemon once the count stops growing (its sender sends
    # within a fraction of a second), past the 300 points.
    seen: list[int] = []

    def settled() -> bool:
        seen.append(daemon.status()["records_received"])
        return len(seen) > 1 and seen[-1] == seen[-2] >= 300

    wait_for(settled, interval=1.0, message="the daemon to hold the points")
    child.kill()
    child.communicate(timeout=30)

    other = socket_path.with_name("other")
    other.write_text("not a socket\n")
    os.replace(other, socket_path)  # at once: the daemon never finds the path empty
    # This used to wait for ever: the daemon went on listening on a socket no path led to.
    process = daemon.process
    assert process is not None
    wait_for(lambda: process.poll() is not None, timeout=30, message="the daemon to exit by itself")
    assert daemon.stop() == 0, daemon.log()
    assert "was replaced by another file" in daemon.log()
    assert socket_path.read_text() == "not a socket\n"  # not its file to remove
    history = MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "held")
    assert [m.value for m in history] == list(range(300))


def test_stop_ends_a_daemon_that_holds_its_lock_without_a_socket_file_and_status_says_so(
    older_daemon: DaemonProcess, socket_path: Path
) -> None:
    daemon = older_daemon
    socket_path.unlink()

    status = cli(socket_path, "status")
    assert status.returncode == 1
    # It said "not running ... a daemon holds the lock: it is starting, stopping or hung".
    assert f"the trackd daemon pid {daemon.pid} holds its lock" in status.stderr, status.stderr
    assert f"but its socket file {socket_path} is missing" in status.stderr, status.stderr

    stop = cli(socket_path, "stop", "--timeout", "30")
    # It used to wait its whole timeout, then say "nothing was signalled".
    assert stop.returncode == 0, stop.stderr
    assert f"trackd daemon (pid {daemon.pid}) stopped after writing everything it had received" in stop.stdout
    assert daemon.stop(timeout=10) == 0
    assert not alive(daemon.pid)
    assert "Received SIGTERM" in daemon.log()


def test_new_process_says_which_daemon_holds_the_lock_without_a_socket_file(older_daemon: DaemonProcess, socket_path: Path) -> None:
    socket_path.unlink()
    code = "import trackd\ntrackd.set_experiment('x')\n"
    result = run_python(code, child_env(socket_path, TRACKD_CONNECT_TIMEOUT="2"))
    assert result.returncode != 0
    # It said the daemon "is starting (started by this process or another)".
    assert f"the trackd daemon pid {older_daemon.pid} holds its lock" in result.stderr, result.stderr
    assert "is starting" not in result.stderr, result.stderr


def test_daemon_whose_lock_file_is_removed_serves_on_and_no_second_daemon_starts(
    daemon: DaemonProcess, socket_path: Path, tmp_path: Path
) -> None:
    # It shut down once its lock file was gone: a new daemon then started on the same folder while
    # this one still wrote its wills file, journal and exit report there (a review saw both run
    # 1.5 s, and one's wills file replace the other's). Serving on, its socket keeps answering,
    # and `trackd daemon start` finds it running.
    store = tmp_path / "mlruns"
    pid = daemon.status()["pid"]
    daemon.paths.lock.unlink()
    wait_for(lambda: "Lock file" in daemon.log(), timeout=10, message="the daemon's line on its lock file")
    started = cli(socket_path, "start")
    assert "already running" in started.stdout + started.stderr, started
    result = run_python(NEWCOMER.format(store=str(store)), child_env(socket_path, TRACKD_AUTOSTART="0"))
    assert result.returncode == 0, result.stderr
    assert daemon.status()["pid"] == pid and alive(pid)
    run_id = result.stdout.strip()
    assert len(MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "b")) == 50
