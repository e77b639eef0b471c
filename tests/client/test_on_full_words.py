"""The on-full line names the cause the client can see: here, a daemon that has not answered the handshake yet."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python

pytestmark = pytest.mark.timeout(60)

LOG_100 = """
import trackd
with trackd.start_run():
    for step in range(100):
        trackd.log_metric("loss", 1.0, step=step)
"""


def test_a_buffer_full_before_the_first_handshake_does_not_say_no_daemon_answers(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # A small buffer filled while the sender's first handshake was under way, beside a daemon that
    # answered a moment later, and the line said "no daemon answers at ...": no attempt had failed.
    # The daemon is stopped so that the handshake is still under way when the loop ends.
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_AUTOSTART="0",
        TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="10", TRACKD_EXIT_TIMEOUT="0",
    )
    daemon.signal(signal.SIGSTOP)
    try:
        result = run_python(LOG_100, env)
    finally:
        daemon.signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    [full] = [line for line in result.stderr.splitlines() if "the event buffer is full" in line]
    assert f"because this process is still connecting to the daemon at {daemon.paths.socket}, or the buffer is small" in full, full
    assert "no daemon answers" not in full
