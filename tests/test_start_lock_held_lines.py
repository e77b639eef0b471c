"""While another process holds the daemon start lock and starts none, the lines say a start is
under way, and the events go to the spool file.

One process at a time starts a daemon; the others wait for it (``_launcher._starting_turn``), up to
TRACKD_CONNECT_TIMEOUT. The sender thread sat in that wait while end_run and exit gave the daemon
up: nothing moved the events to the spool file, and the lines spoke of a daemon that did not exist.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import child_env, spooled_events
from test_refusal_one_wording import ASK_THEN_LOG

from trackd._paths import DaemonPaths, ensure_private_directory

pytestmark = pytest.mark.timeout(90)

# 100 points to a run ended in the middle of the job (end_run), then one to a run ended at exit.
CHILD = """
import trackd
trackd.start_run()
for step in range(100):
    trackd.log_metric("x", float(step), step=step)
trackd.end_run()
print("ended", flush=True)
trackd.start_run()
trackd.log_metric("y", 1.0)
"""


@pytest.fixture
def start_lock_held(paths: DaemonPaths) -> Iterator[None]:
    """The start lock held by this process, which starts no daemon (a process stuck in its start)."""
    ensure_private_directory(paths.directory)
    fd = os.open(paths.starting, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.usefixtures("start_lock_held")
def test_end_run_and_exit_say_a_start_is_under_way_and_spool_every_event(paths: DaemonPaths, store: Path, tmp_path: Path) -> None:
    # end_run said "waiting for 102 events to reach the daemon at ..., as long as it keeps
    # acknowledging them", then that it "answered nothing for 3 s" and the events "could not be
    # moved to the spool file in time"; exit waited twice more and said 105 events "are lost".
    spool = tmp_path / "spool"
    env = child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool), TRACKD_EXIT_TIMEOUT="3")
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ended\n", result.stderr
    lines = result.stderr.splitlines()
    starting = f"the daemon at {paths.socket} is starting (started by this process or another)"
    assert lines[0] == (
        f"trackd: waiting for 102 events to reach the daemon at {paths.socket}: up to 3 s for it to answer, then as "
        f"long as it keeps acknowledging them (TRACKD_EXIT_TIMEOUT). {starting[:1].upper()}{starting[1:]} and does not "
        "answer yet."
    ), result.stderr
    assert lines[1].startswith(f"trackd: 102 events were not delivered: {starting} and has not answered in 3 s; "), result.stderr
    assert lines[2].startswith(f"trackd: 3 more events were not delivered: {starting} and has not answered since "), result.stderr
    assert len(lines) == 3, result.stderr
    # Two runs' creations and ends, 101 points: none lost.
    assert spooled_events(spool) == 105


# ASK_THEN_LOG, then waits until its events are spooled (the thread tried twice
# to start a daemon by then, each time waiting TRACKD_CONNECT_TIMEOUT for the lock), and exits.
ASKS_AND_WAITS = ASK_THEN_LOG + """
deadline = time.monotonic() + 30
while not os.listdir(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


@pytest.mark.usefixtures("start_lock_held")
def test_a_request_and_the_retrying_line_say_another_process_is_starting_the_daemon(
    paths: DaemonPaths, store: Path, tmp_path: Path
) -> None:
    # The request said "none answered within 2 s and none could be started. Start one with
    # `trackd daemon start`" (which would wait for the same lock), and the retrying line "A trackd
    # daemon was started for ... but did not answer within 2 s; see ...log" of a start this
    # process never made.
    spool = tmp_path / "spool"
    spool.mkdir()
    env = child_env(
        paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool), TRACKD_EXIT_TIMEOUT="1",
        TRACKD_CONNECT_TIMEOUT="2",
    )
    result = subprocess.run([sys.executable, "-c", ASKS_AND_WAITS, "locked", "10", str(spool)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Cannot get or create experiment 'locked': the daemon at {paths.socket} is starting (started by this process or another) "
        "and did not answer within 2 s.\n"
    ), result.stdout
    retrying = f"No trackd daemon answers at {paths.socket}: another process holds the lock that lets one process at a time start it"
    assert retrying in result.stderr and "was started for" not in result.stderr, result.stderr
