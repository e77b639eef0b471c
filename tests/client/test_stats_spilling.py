"""stats() counts the events on their way to the spool file ("spilling").

The sender thread writes the spool file outside its lock: the records a write took are in neither
the buffer, the unacknowledged batches nor the file until it ends, and stats() had no field for
them, so its counts added up to less than pending() for as long as a slow spool disk wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_python
from test_slow_spool_disk import LOG_THEN_HANG_THE_SPOOL, _env

# The spill's open of the spool file never returns (a FIFO no one reads): then what stats() says.
STATS_WHILE_THE_SPILL_HANGS = LOG_THEN_HANG_THE_SPOOL + """
import json
sender = next(thread for thread in threading.enumerate() if thread.name == "trackd-sender")
wchan = Path(f"/proc/self/task/{sender.native_id}/wchan")
deadline = time.monotonic() + 60
while wchan.read_text() != "wait_for_partner":
    if time.monotonic() > deadline:
        print("never-stuck", flush=True)
        os._exit(0)
    time.sleep(0.01)
print(json.dumps({**client.stats(), "pending": client.pending()}), flush=True)
os._exit(0)
"""


def test_stats_counts_the_events_a_spool_write_holds(socket_path: Path, store: Path, tmp_path: Path) -> None:
    env = _env(socket_path, store, tmp_path, TRACKD_CONNECT_TIMEOUT="0.2")
    result = run_python(STATS_WHILE_THE_SPILL_HANGS, env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.strip() == "never-stuck":
        pytest.skip("this kernel does not show where a thread waits (/proc/<pid>/task/<tid>/wchan)")
    stats = json.loads(result.stdout)
    assert stats["spilling"] == 101  # the points and the run's creation, taken for the file
    assert stats["buffered"] + stats["unacked_events"] + stats["spooled"] + stats["spilling"] == stats["pending"]
