"""A daemon's refusal of this client is said one way, in every line and error that says it.

The spill's line said "refused this client (...)", exit's "refused this client's last attempt to
connect (...)", end_run's waiting line "It refused this client, and trackd tries again: ...", and
a request's error "refused this client: ...", of one refusal (its --max-connections), a line apart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env

from trackd.protocol import Welcome

pytestmark = pytest.mark.timeout(90)

# Asks for experiment argv[1], printing the error it gets, then logs argv[2] points to a run.
ASK_THEN_LOG = """
import os, sys, time, trackd
try:
    trackd.set_experiment(sys.argv[1])
except trackd.DaemonUnavailable as exc:
    print(exc, flush=True)
trackd.start_run()
for step in range(int(sys.argv[2])):
    trackd.log_metric("x", float(step), step=step)
"""

# With 3000 points past half of a 1000-event buffer (the spill's line): ends its run in the
# middle of the job (end_run's lines), logs to a new run and exits (exit's).
CHILD = ASK_THEN_LOG + """
trackd.end_run()
trackd.start_run()
trackd.log_metric("y", 1.0)
"""


def test_every_line_says_a_refusal_in_the_same_words(socket_path: Path, store: Path, tmp_path: Path) -> None:
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    try:
        holder = RawClient(socket_path)
        try:
            assert isinstance(holder.hello(str(store)), Welcome)
            env = child_env(
                socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0", TRACKD_EXIT_TIMEOUT="2",
                TRACKD_CONNECT_TIMEOUT="1", TRACKD_MAX_BUFFERED="1000", TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
            )
            result = subprocess.run([sys.executable, "-c", CHILD, "refused", "3000"], env=env, capture_output=True, text=True, timeout=60)
        finally:
            holder.close()
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    words = f"the daemon at {socket_path} refused this client's last attempt to connect (The trackd daemon already serves 1"
    # The request's error and the spill's line at least; the buffer's "Holding" line too unless the
    # first batches went behind the Hello (6251910) and were spooled, with the rest, by the refusal.
    assert said.lower().count(words.lower()) >= 2, said
    assert said.count("refused this client") == said.lower().count(words.lower()), said
