"""`trackd daemon start <flags>` against a running daemon says the flags do not apply to it.

It printed "already running" and exited 0, the flags dropped without a word: a user readying a
daemon for 200 parallel jobs (--max-connections 4096) believed the autostarted one had them.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import DaemonProcess, child_env


def _start(daemon: DaemonProcess, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "start", "--socket", str(daemon.paths.socket), *flags],
        capture_output=True, text=True, timeout=60, env=child_env(daemon.paths.socket),
    )


def test_flags_given_to_a_running_daemon_are_said_not_to_apply(daemon: DaemonProcess) -> None:
    plain = _start(daemon)
    assert plain.returncode == 0 and "already running" in plain.stdout and plain.stderr == "", plain
    flagged = _start(daemon, "--max-connections", "4096", "--idle-timeout", "5")
    assert flagged.returncode == 0 and "already running" in flagged.stdout, flagged
    assert flagged.stderr == (
        "trackd: --max-connections=4096 --idle-timeout=5 do not apply to the daemon already running; "
        "`trackd daemon stop` first, then `trackd daemon start` with them.\n"
    ), flagged.stderr
