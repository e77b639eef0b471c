"""``trackd daemon status`` gives a client that connected within the rate window its rate since it
connected, not its events spread over the whole window.

A client logging 3,000 events/s showed 983/s 3.5 s after it connected to a daemon up for longer
than the window. Real daemon, a real client process logging at a steady pace, the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers import DaemonProcess, Child, child_env, wait_for

from trackd.daemon._state import RATE_WINDOW

# 200 points every 0.1 s (2,000 a second) until killed; "logging" once the first are flushed.
STEADY = """
import time, trackd
trackd.set_tracking_uri({store!r})
trackd.start_run()
step = 0
trackd.log_metric("x", 0.0, step=step)
trackd.flush()
print("logging", flush=True)
while True:
    for _ in range(200):
        step += 1
        trackd.log_metric("x", 0.5, step=step)
    time.sleep(0.1)
"""


def test_a_client_that_connected_within_the_window_is_rated_since_it_connected(
    daemon: DaemonProcess, socket_path: Path, tmp_path: Path
) -> None:
    # The daemon's window is full: a client connecting now is inside it for a fraction of it.
    wait_for(lambda: daemon.status()["uptime_s"] >= RATE_WINDOW, timeout=RATE_WINDOW + 10, interval=0.2, message="a full rate window")
    with Child(STEADY.format(store=str(tmp_path / "mlruns")), [], child_env(socket_path, TRACKD_AUTOSTART="0")) as child:
        wait_for(lambda: "logging" in child.out, timeout=30, message="the client to log")
        time.sleep(2.0)
        result = subprocess.run(
            [sys.executable, "-m", "trackd", "daemon", "status", "--json", "--socket", str(socket_path)],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    [client] = status["clients"]
    # The total spreads its events over the whole window, of which the client was connected a few
    # seconds (however slowly this machine ran it): its own rate is over those seconds, so well
    # above. It was the total's, to the event.
    assert client["receive_rate"] > 1.5 * status["receive_rate"], status
