"""A buffer that fills before a sender's first connection is made says so, not that no daemon answers.

A process logs its first points while its sender thread starts the daemon (autostart), or a forked
worker (a fork Pool's) while its own sender makes its first connection: with a small
TRACKD_MAX_BUFFERED under TRACKD_ON_FULL=drop, each said "no daemon answers at ...; trackd keeps
trying to reconnect" of a daemon that answered it a moment later.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env

from trackd._paths import DaemonPaths

LOG_AT_ONCE = """
import trackd
trackd.start_run()
for step in range(500):
    trackd.log_metric("loss", float(step), step=step)
trackd.flush(timeout=30)
trackd.end_run()
"""

# The parent's run is connected and flushed; its forked child logs at once, past the bound, and
# exits after a flush.
FORKED_CHILD_LOGS_AT_ONCE = """
import os, sys, trackd
trackd.start_run()
trackd.log_metric("parent", 1.0)
trackd.flush(timeout=30)
pid = os.fork()
if pid == 0:
    for step in range(500):
        trackd.log_metric("child", float(step), step=step)
    trackd.flush(timeout=30)
    os._exit(0)
_, status = os.waitpid(pid, 0)
trackd.end_run()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _full_line(program: str, socket_path: Path, store: Path) -> str:
    """The one on-full line of ``program`` run with a 50-event buffer under the drop policy."""
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="50")
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [full] = [line for line in result.stderr.splitlines() if "buffer is full" in line]
    return full


def test_a_buffer_full_while_the_process_starts_its_daemon_says_it_is_connecting(
    paths: DaemonPaths, socket_path: Path, store: Path
) -> None:
    full = _full_line(LOG_AT_ONCE, socket_path, store)
    assert "no daemon answers" not in full, full
    assert f"still connecting to the daemon at {socket_path} (starting one if none answers)" in full, full


def test_a_forked_child_whose_buffer_fills_before_its_first_connect_does_not_say_no_daemon_answers(
    daemon: DaemonProcess, socket_path: Path, store: Path
) -> None:
    # Its thread may connect before the buffer fills ("the daemon is not keeping up, or the buffer
    # is small"): either way the line does not send the user looking for a daemon that runs.
    full = _full_line(FORKED_CHILD_LOGS_AT_ONCE, socket_path, store)
    assert "no daemon answers" not in full, full
