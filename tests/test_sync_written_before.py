"""`trackd sync` of a spool whose batches the store holds already says so, not "delivered 0 batches",
and counts events as the exit line that spooled them did (batches in brackets).

A spool can outlive its delivery: a copy restored from a backup, or a process killed after the
daemon wrote its batches and before it removed the file. The daemon's Welcome says which batches
of that client it wrote; sync sends none of them again, and said "delivered 0 batches of client
..." of the file, which read as a failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, create_run_record, metric_records, steps_in_store

from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, RecordKind, encode_frame

RUN_ID = "abcdefabcdefabcdefabcdefabcdef56"


def _sync(daemon: DaemonProcess, spool_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )


def _hello(tmp_path: Path, store: Path, client_id: str) -> tuple[Path, bytes]:
    """A spool folder, and the Hello frame a spool file of ``client_id`` starts with."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=1, host=socket.gethostname(), store_root=str(store))
    return spool_dir, encode_frame(hello)


def test_a_spool_the_store_holds_already_is_said_to_be_there_and_one_partly_there_says_how_much(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool_dir, hello = _hello(tmp_path, store, "restored")
    first = hello + encode_frame(Batch(seq=1, records=[create_run_record(RUN_ID), *metric_records(RUN_ID, "x", 3)]))
    second = encode_frame(Batch(seq=2, records=[(1, RUN_ID, "x", 1.5, 1_700_000_000_003, 3)]))
    spool = spool_dir / "restored.spool"
    spool.write_bytes(first + second)
    backup = tmp_path / "backup.spool"
    shutil.copyfile(spool, backup)

    delivered = _sync(daemon, spool_dir)
    assert delivered.returncode == 0 and f"{spool}: delivered 5 events (2 batches) of client restored\n" in delivered.stdout, delivered

    shutil.copyfile(backup, spool)  # the same file again: the store has both of its batches
    again = _sync(daemon, spool_dir)
    assert again.returncode == 0, again
    assert f"{spool}: removed, nothing to send: the store had every batch of client restored already: 5 events (2 batches)" in again.stdout, again
    assert "delivered 0" not in again.stdout and not spool.exists()

    # Part of it held: a third batch the daemon has not seen is sent, the two before are said to be there.
    spool.write_bytes(first + second + encode_frame(Batch(seq=3, records=[(1, RUN_ID, "x", 2.0, 1_700_000_000_004, 4)])))
    partly = _sync(daemon, spool_dir)
    assert partly.returncode == 0, partly
    assert f"{spool}: delivered 1 event (1 batch) of client restored; the store had 5 events (2 batches) of it already" in partly.stdout, partly
    assert steps_in_store(store, RUN_ID) == [0, 1, 2, 3, 4]  # each once


def test_a_spool_whose_only_batch_cannot_be_decoded_is_not_said_to_be_in_the_store(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # It said "the store had every batch of client gone already (0 batches)" beside "lost, not delivered".
    spool_dir, hello = _hello(tmp_path, store, "gone")
    artifact = (RecordKind.ARTIFACT.value, RUN_ID, "w.bin", None, "/tmp/w.bin", (1, "x"))  # a stamp no daemon decodes
    spool = spool_dir / "gone.spool"
    spool.write_bytes(hello + encode_frame(Batch.of_checked_records(1, [artifact], 1)))
    synced = _sync(daemon, spool_dir)
    assert f"{spool}: removed, none of its batches of client gone could be delivered" in synced.stdout, synced
    assert "the store had" not in synced.stdout and "lost, not delivered" in synced.stderr, synced
    assert synced.returncode == 1, synced  # nothing of it delivered: it exited 0
