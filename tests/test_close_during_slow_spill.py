"""What was logged during a slow spill, before close()'s mark, is spooled when the close stops the
sender thread: a spill takes what the buffer held when it began, and the thread returned from the
failed attempt to connect with the rest in its buffer, neither sent nor spooled, and pending()
never reached 0 (a review's repro: 51 of 1,051 events left behind).

The spool file is a FIFO that a reader drains only after close() returned: the spill waits in its
open meanwhile, as on a hung NFS spool folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import child_env

CLOSE_DURING_SLOW_SPILL = """
import json, os, threading, time, trackd
from pathlib import Path
from trackd.client import get_client
run = trackd.start_run()
client = get_client()
sender = client._sender
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
os.mkfifo(spool, 0o600)
thread = next(t for t in threading.enumerate() if t.name == "trackd-sender")
def in_fifo_open():
    try:
        return Path(f"/proc/self/task/{thread.native_id}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False
logged = 0
deadline = time.monotonic() + 60
while not in_fifo_open():
    if time.monotonic() > deadline:
        print(json.dumps({"stuck": False}), flush=True)
        os._exit(0)
    for _ in range(100):
        trackd.log_metric("x", float(logged), step=logged)
        logged += 1
    time.sleep(0.01)
for _ in range(50):  # logged during the stuck spill, before close()'s mark
    trackd.log_metric("x", float(logged), step=logged)
    logged += 1
sender.close(timeout=0.5)
data = bytearray()
def drain():
    with open(spool, "rb") as fifo:
        while chunk := fifo.read(65536):
            data.extend(chunk)
threading.Thread(target=drain, daemon=True).start()
thread.join(30)
print(json.dumps({"stuck": True, "alive": thread.is_alive(), "buffered": len(sender.buffer),
                  "pending": sender.pending(), "spooled": sender._spill.records}), flush=True)
os._exit(0)
"""


def test_what_was_logged_during_a_slow_spill_before_close_is_spooled_too(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    env = child_env(
        Path("/tmp") / f"td-none-{tmp_path.name[-8:]}.sock", TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool),
        TRACKD_TRACKING_URI=str(tmp_path / "mlruns"), TRACKD_MAX_BUFFERED="1000",
    )
    result = subprocess.run([sys.executable, "-c", CLOSE_DURING_SLOW_SPILL], capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["stuck"], "the spill never waited in the spool file's open"
    assert not report["alive"], report
    # Every event is in the spool file: none left in the buffer, uncounted anywhere.
    assert report["buffered"] == 0 and report["spooled"] == report["pending"], report
