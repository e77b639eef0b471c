"""A second `trackd sync` of a spool whose store is full hears why, as the first did.

The daemon tells each client of a store refusing writes, once per outage, that its events wait.
A spool delivered twice is the same client on a new connection: the second delivery heard
nothing, waited its whole --timeout and said the daemon "did not confirm" the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, fill
from test_spool import _old_spool

pytestmark = pytest.mark.timeout(150)


def _sync(daemon: DaemonProcess, spool_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir),
         "--timeout", "40"],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=120,
    )


def test_each_sync_of_a_spool_for_a_full_store_says_the_store_is_full(small_disk: Path, daemon: DaemonProcess, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    store = small_disk / "mlruns"
    spool = _old_spool(spool_dir, store, "0123456789abcdef0123456789abcdef")
    filler = small_disk / "filler"
    fill(filler)
    try:
        first, second = _sync(daemon, spool_dir), _sync(daemon, spool_dir)
    finally:
        filler.unlink()
    full = f"The store at {store} cannot be written (No space left on device)"
    for synced in (first, second):
        assert synced.returncode == 1 and full in synced.stderr, synced
        assert "did not confirm" not in synced.stderr, synced
    assert spool.exists()
