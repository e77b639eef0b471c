"""`trackd sync` against a stopped daemon waits for it once, not once per spool file.

A SIGSTOPped daemon held `trackd sync` for its --timeout for every file in turn (5 files at the
default 60 s: 5 minutes), each to say the same thing; the files after the first are now reported
as not tried, for the same reason, and stay for the next sync.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, create_run_record, metric_records

from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, encode_frame

pytestmark = pytest.mark.timeout(120)


def _spool(spool_dir: Path, store: Path, client_id: str, run_id: str) -> Path:
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=1, host=socket.gethostname(), store_root=str(store))
    path = spool_dir / f"{client_id}.spool"
    path.write_bytes(encode_frame(hello) + encode_frame(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "x", 2)])))
    return path


def test_sync_tries_a_stopped_daemon_once_and_leaves_every_file(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    files = [_spool(spool_dir, store, f"gone{n}", f"{n:032x}") for n in range(3)]
    command = [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)]
    with daemon.paused():
        stalled = subprocess.run([*command, "--timeout", "2"], capture_output=True, text=True, timeout=60, env=child_env(daemon.paths.socket))
    assert stalled.returncode == 1, stalled
    lines = stalled.stderr.splitlines()
    assert len(lines) == 3, stalled.stderr
    assert f"`kill -CONT {daemon.pid}` resumes it" in lines[0], lines
    # Before: each file waited its 2 s and said the first line's words.
    assert all("not tried, as the daemon did not answer for the file before: " in line for line in lines[1:]), lines
    assert all(path.exists() for path in files)

    delivered = subprocess.run(command, capture_output=True, text=True, timeout=60, env=child_env(daemon.paths.socket))
    assert delivered.returncode == 0 and delivered.stdout.count(": delivered 3 events (1 batch)") == 3, delivered
    assert not any(path.exists() for path in files)
