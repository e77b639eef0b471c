"""A daemon started by hand on a socket path too long for a Unix socket names what chose the path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import child_env

TOO_LONG = "/tmp/" + "x" * 120 + "/d.sock"


def test_a_too_long_socket_given_with_socket_is_advised_a_shorter_socket_not_trackd_socket(socket_path: Path) -> None:
    # `python -m trackd.daemon --socket <too long>` advised "set TRACKD_SOCKET to a shorter one".
    given = subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--socket", TOO_LONG],
        env=child_env(socket_path), capture_output=True, text=True, timeout=30,
    )
    assert given.returncode == 1 and "pass --socket a shorter one" in given.stderr, given.stderr
    assert "TRACKD_SOCKET" not in given.stderr, given.stderr
    from_variable = subprocess.run(
        [sys.executable, "-m", "trackd.daemon"],
        env=child_env(socket_path, TRACKD_SOCKET=TOO_LONG), capture_output=True, text=True, timeout=30,
    )
    assert from_variable.returncode == 1 and "set TRACKD_SOCKET to a shorter one" in from_variable.stderr, from_variable.stderr
