"""The line a logging call prints when a stopped daemon has said nothing for 2 s while it waits for
room (TRACKD_ON_FULL=block) says what comes next: the give-up after TRACKD_CONNECT_TIMEOUT, and
that the calls then go on. A real daemon, stopped and resumed with signals, and a real producer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env
from test_stall_give_up import _log_while_stopped


@pytest.mark.timeout(180)
def test_the_stall_line_says_when_the_daemon_will_be_given_up_and_that_the_calls_go_on(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_CONNECT_TIMEOUT="6", TRACKD_AUTOSTART="0",
    )
    child = _log_while_stopped(daemon, env, 100_000, tmp_path / "go")
    waiting = [line for line in child.err if line.startswith("trackd: logging calls are waiting for room (")]
    gave_up = [index for index, line in enumerate(child.err) if "acknowledged nothing for" in line and "were not delivered" in line]
    assert len(waiting) == 1 and len(gave_up) == 1, child.stderr()
    # It used to end at "... or stuck writing to its disk (TRACKD_ON_FULL=block).": a user could
    # not tell a wait of seconds from one lasting as long as the daemon stayed stopped.
    assert f"the daemon at {daemon.paths.socket} has acknowledged nothing for " in waiting[0], waiting[0]
    assert "; if it stays silent, trackd gives it up and spools the events after " in waiting[0], waiting[0]
    assert waiting[0].endswith(" s more (TRACKD_CONNECT_TIMEOUT=6), and the calls go on (TRACKD_ON_FULL=block)."), waiting[0]
    # Said before the give-up it announces.
    assert child.err.index(waiting[0]) < gave_up[0], child.stderr()
