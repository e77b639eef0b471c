"""The background delivery of an exited process's spool to a store that refuses writes names the store.

A process connected for ORPHAN_DELIVERY_DELAY delivers the spool files other processes left in its
spool folder. When their store's disk is full (or read-only) the daemon keeps the batches and says
why (``store_unavailable``); the one line for the spool quotes that, as the process's own lines do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, fill, wait_for
from test_orphan_delivery_outage import CONNECTS_AND_LINGERS
from test_spool import _old_spool

from trackd.store import StoreReader

pytestmark = pytest.mark.timeout(150)


def test_an_orphan_spool_for_a_full_store_is_said_to_wait_for_that_store(
    small_disk: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    # It said "could not deliver the spool ... of an exited process: The daemon closed the
    # connection while ... was delivered (ErrorReply(request_id=0, code='store_unavailable', ...))"
    # of a daemon that kept the connection, and the batches, for a full disk.
    orphan_store = small_disk / "mlruns"
    spool_dir = tmp_path / "spool"
    orphan = _old_spool(spool_dir, orphan_store, "0123456789abcdef0123456789abcdef")
    filler = small_disk / "filler"
    fill(filler)
    env = child_env(daemon.paths.socket, TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0")
    child = subprocess.Popen(
        [sys.executable, "-c", CONNECTS_AND_LINGERS, str(tmp_path / "mlruns")], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = child.communicate("\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
        filler.unlink()
    assert child.returncode == 0, err
    assert out.split() == ["connected", "tried"]
    full = f"The store at {orphan_store} cannot be written (No space left on device): "
    keeps = f", so the daemon at {daemon.paths.socket} keeps what it received of {orphan} and writes it once the store takes writes again; "
    assert err.startswith(f"trackd: could not deliver the spool {orphan} of an exited process: {full}") and keeps in err, err
    assert len(err.splitlines()) == 1 and "closed the connection" not in err, err
    assert orphan.exists()  # whole, for the next process or `trackd sync`
    # What the line says the daemon does, once the disk takes writes again.
    reader = StoreReader(orphan_store)
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 60, message="the daemon to write what it kept")
    assert [m.step for m in reader.get_metric_history("0123456789abcdef0123456789abcdef", "loss")] == [0, 1, 2]
