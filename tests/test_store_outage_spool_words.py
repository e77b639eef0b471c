"""What the line of a wait that gave up on a full store says of the spool file is true.

The daemon answers and keeps the events for the store; the spool file is for a daemon that stops
before the store takes writes again. The line said they are "delivered when a daemon answers" (one
had), and, in the middle of a job, "Until then, what follows is spooled there too" (what followed
went to that daemon, which the process reconnected to at once).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for
from test_exit_line_daemon_answered import POINTS, run_child

from trackd.store import StoreReader

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("how", ["exit", "end_run"])
def test_the_spool_of_a_full_store_is_said_to_be_for_a_daemon_that_stops_first(
    small_disk: Path, daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    spool_dir = tmp_path / "spool"
    monkeypatch.setenv("TRACKD_SPOOL_DIR", str(spool_dir))
    store, filler, run_id = small_disk / "mlruns", small_disk / "filler", uuid.uuid4().hex
    try:
        err = run_child(
            daemon.paths.socket, store, how, "3", filler=str(filler), run_id=run_id,
            release=lambda: wait_for(lambda: daemon.status()["write_errors"] > 0, 30, message="the daemon to meet the full disk"),
        )
    finally:
        filler.unlink(missing_ok=True)  # the disk takes writes again
    given_up = [line for line in err.splitlines() if "events were not delivered: the store at" in line]
    ending = (
        " and delivered from there once the store takes writes again, by this process or the next trackd process to "
        f"connect, or by `trackd sync` on {socket.gethostname()}."
    )
    assert given_up and all(line.endswith(ending) for line in given_up), err
    assert "delivered when a daemon answers" not in err and "Until then" not in err, err
    # What the line says: the daemon writes what it kept, and the spool delivered from there
    # (`trackd sync`, a real CLI) writes nothing twice.
    reader = StoreReader(store)
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 60, message="the daemon to write what it kept")
    synced = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync"], env=child_env(daemon.paths.socket, TRACKD_SPOOL_DIR=str(spool_dir)),
        capture_output=True, text=True, timeout=60,
    )
    assert synced.returncode == 0, synced.stderr
    assert [m.step for m in reader.get_metric_history(run_id, "x")] == list(range(POINTS))
