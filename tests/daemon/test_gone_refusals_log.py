"""Refusals of a client that left before they were written: named in the log, but not one line each."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, wait_for

from trackd.protocol import Batch, RecordKind, Welcome

pytestmark = pytest.mark.timeout(60)


def test_a_gone_clients_refusals_are_named_a_few_times_then_counted(socket_path: Path, store: Path) -> None:
    # A process that logged 4,000 params for a run that does not exist and exited at once: every
    # refused item was a WARNING line (a reviewer's 150,000 lines rotated the daemon's start out of
    # its log in a second). The first 10 are named; status counts them all. Fewer than 4,096
    # events: the batch waits out --max-age, so it is written once the client has left.
    daemon = DaemonProcess(socket_path, "--max-age", "0.5").start()
    try:
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store), client_id="gone-client"), Welcome)
        run_id = uuid.uuid4().hex
        raw.send(Batch(seq=1, records=[(RecordKind.PARAM.value, run_id, f"p{i}", "1") for i in range(4000)]))
        raw.close()
        wait_for(lambda: daemon.status()["items_rejected"] >= 4000, timeout=30, message="the 4,000 refusals")
        lines = [line for line in daemon.log().splitlines() if "client gone, could not be told" in line]
        assert len(lines) == 10, len(lines)  # daemon/_acks.py GONE_REFUSALS_LOGGED
        assert "p0" in lines[0] and "its later refusals are counted in status, not logged" in lines[-1], lines
    finally:
        assert daemon.stop() == 0, daemon.log()
