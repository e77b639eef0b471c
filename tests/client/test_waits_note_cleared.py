"""A wait said on a stderr quiets the "waiting" lines of others only while it lasts.

Process A exiting with a SIGSTOPped daemon said "waiting up to 59 s more (60 s in all) ...", and
noted that wait (``<socket>.waits``, and in its fork family's shared memory) until its planned end.
The daemon resumed, A's events were delivered 2 s in and A exited; then a later, separate stall:
process B on the same stderr, whose wait ends within A's planned one (TRACKD_EXIT_TIMEOUT=20),
waited at its exit in silence, though nobody waited any more and the user had seen A's wait end.
So did a forked worker (a client of its own, 20 s) whose parent's `end_run` wait ended, and a
process whose wait a process killed meanwhile had said. Each case's second wait must be said. A
real daemon, stopped and resumed; real processes on one stderr file; the points read back with MLflow.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.timeout(180)

POINTS = 50

# argv: the folder of the flag files, the process's name, "exit" or "fork". Its run is in the store
# before the daemon is stopped ("ready-<name>"); at "go-<name>" it logs its points, then exits ("exit")
# or ends its run, which waits ("fork"): then, at "go-worker", a forked worker logs into a second run
# through a client of its own, whose exit waits 20 s at most, and exits, waiting for the daemon stopped again.
JOB = """
import os, sys, time, trackd

folder, name, mode = sys.argv[1:4]

def reach(flag):
    open(os.path.join(folder, flag), "w").close()

def wait(flag):
    while not os.path.exists(os.path.join(folder, flag)):
        time.sleep(0.01)

trackd.start_run(run_name=name)
trackd.flush()
reach(f"ready-{name}")
wait(f"go-{name}")
for step in range(POINTS):
    trackd.log_metric("x", float(step), step=step)
if mode == "fork":
    trackd.end_run()
    run = trackd.start_run(run_name="worker")
    trackd.flush()
    reach("ready-worker")
    wait("go-worker")
    pid = os.fork()
    if pid == 0:
        os.environ["TRACKD_EXIT_TIMEOUT"] = "20"
        client = trackd.Client(config=trackd.ClientConfig.from_env())
        for step in range(POINTS):
            client.log_metric(run.info.run_id, "x", float(step), step=step)
        sys.exit(0)  # its exit waits for the daemon
    os.waitpid(pid, 0)
""".replace("POINTS", str(POINTS))

WAITING = re.compile(r": waiting (?:up to \d+ s more \(\d+ s in all\) )?for \d+ events")


def _start(folder: Path, name: str, mode: str, env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    script = folder / "job.py"
    script.write_text(JOB)
    with stderr.open("a") as err:  # one stderr file for all (one device and inode), as a job's
        return subprocess.Popen([sys.executable, str(script), str(folder), name, mode], env=env, stderr=err, cwd=folder)


def _env(daemon: DaemonProcess, store: Path, exit_timeout: str) -> dict[str, str]:
    return child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT=exit_timeout, TRACKD_AUTOSTART="0",
        TRACKD_SPOOL_DIR=str(store.parent / "spool"),  # where a wait given up leaves them (not here)
    )


def _waits_said(stderr: Path) -> int:
    return sum(1 for line in stderr.read_text().splitlines() if WAITING.search(line))


def _said(stderr: Path, count: int, what: str) -> None:
    wait_for(lambda: _waits_said(stderr) >= count, timeout=30, message=f"{what}; stderr: {stderr.read_text()!r}")


def _points(store: Path, name: str) -> list[int]:
    client = MlflowClient(tracking_uri=str(store))
    (run,) = client.search_runs(["0"], filter_string=f"attributes.run_name = '{name}'")
    return sorted(metric.step for metric in client.get_metric_history(run.info.run_id, "x"))


@pytest.mark.parametrize("first", ["delivered", "killed"])
def test_a_later_wait_on_the_same_stderr_is_said_once_the_first_ended(
    daemon: DaemonProcess, store: Path, tmp_path: Path, first: str
) -> None:
    """``delivered``: A's wait ends as the daemon resumes, and B's exit meets a later stall.
    ``killed``: A is SIGKILLed while it waits (it removes no note), and B's exit waits on."""
    stderr = tmp_path / "stderr"
    # B's wait ends before A's would have: a wait ending later was said anyway.
    a, b = (_start(tmp_path, name, "exit", _env(daemon, store, timeout), stderr) for name, timeout in (("A", "60"), ("B", "20")))
    try:
        wait_for(lambda: (tmp_path / "ready-A").exists() and (tmp_path / "ready-B").exists(), timeout=60, message="the runs")
        daemon.signal(signal.SIGSTOP)
        try:
            (tmp_path / "go-A").touch()
            _said(stderr, 1, "A's wait")
            if first == "killed":
                a.kill()
        finally:
            if first == "delivered":
                daemon.signal(signal.SIGCONT)
        assert a.wait(timeout=60) == (0 if first == "delivered" else -signal.SIGKILL), stderr.read_text()
        if first == "delivered":
            daemon.signal(signal.SIGSTOP)  # a new stall
        try:
            (tmp_path / "go-B").touch()
            # It waited up to 59 s in silence: A's note of its wait covered B's.
            _said(stderr, 2, "B's wait, said though A's ended")
        finally:
            daemon.signal(signal.SIGCONT)
        assert b.wait(timeout=60) == 0, stderr.read_text()
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = stderr.read_text().splitlines()
    # Each wait said, and each delivered: no line of events not delivered.
    assert len(lines) == 2 and _waits_said(stderr) == 2, lines
    assert _points(store, "B") == list(range(POINTS))
    if first == "delivered":
        assert _points(store, "A") == list(range(POINTS))


def test_a_forked_worker_says_its_wait_once_its_parents_ended(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    job = _start(tmp_path, "parent", "fork", _env(daemon, store, "60"), stderr)
    try:
        wait_for(lambda: (tmp_path / "ready-parent").exists(), timeout=60, message="the parent's run")
        with daemon.paused():
            (tmp_path / "go-parent").touch()
            _said(stderr, 1, "the parent's end_run wait")
        wait_for(lambda: (tmp_path / "ready-worker").exists(), timeout=60, message="the parent's end_run delivered")
        with daemon.paused():  # a new stall
            (tmp_path / "go-worker").touch()
            # The worker waited in silence: the family's note of its parent's wait covered its own.
            _said(stderr, 2, "the worker's exit wait, said though its parent's ended")
        assert job.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    lines = stderr.read_text().splitlines()
    assert len(lines) == 2 and _waits_said(stderr) == 2, lines
    assert _points(store, "parent") == list(range(POINTS)) == _points(store, "worker")
