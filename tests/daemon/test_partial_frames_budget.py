"""Connections holding frames that never complete cannot make the daemon hold more than its budget.

Each connection could hold all but the last byte of a 16 MiB frame for ever: 40 such connections
held 672 MB, and --max-connections (1024) of them could hold 17 GB. Past the daemon's budget of
bytes held in partial frames (MAX_PARTIAL_FRAME_BYTES, 5 MiB here), the connection whose partial
frame is the oldest is closed, with a log line.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_lines, metric_records

from trackd.protocol import Ack, Batch, Welcome

pytestmark = pytest.mark.timeout(120)

BUDGET = 5 * 1024 * 1024
POINTS = 40_000
SCALED = f"from trackd.daemon import _partial_frames\n_partial_frames.MAX_PARTIAL_FRAME_BYTES = {BUDGET}"


def batch_frame(client: RawClient, run_id: str, key: str) -> bytes:
    """A batch creating ``run_id`` with enough points of ``key`` to make a frame of ~2 MiB."""
    frame = client.protocol.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, key, POINTS)]))
    assert 2 * 1024 * 1024 < len(frame) < BUDGET // 2, len(frame)
    return frame


def test_past_the_budget_the_connection_holding_the_oldest_partial_frame_is_closed(socket_path: Path, store: Path) -> None:
    daemon = DaemonProcess(socket_path, preamble=SCALED).start()
    clients = [RawClient(socket_path, timeout=30) for _ in range(3)]
    try:
        frames, run_ids = [], [uuid.uuid4().hex for _ in clients]
        for number, client in enumerate(clients):
            assert isinstance(client.hello(str(store), client_id=f"partial-{number}"), Welcome)
            frame = batch_frame(client, run_ids[number], f"k{number}")
            client.send_bytes(frame[:-1])  # all but its last byte, then silence
            frames.append(frame)
        # Two held ~4.6 MiB; the third took the daemon past 5 MiB, and the first, the oldest, was closed.
        # This used to hold all three for ever (this recv waited out its timeout).
        assert clients[0].sock.recv(4096) == b""
        log = daemon.log()
        lines = [line for line in log.splitlines() if "a frame not whole" in line]
        assert len(lines) == 1 and "client pid" in lines[0], log
        assert f"over the daemon's budget of {BUDGET:,} bytes" in lines[0], lines
        assert daemon.status()["errors"] == {"Connections closed holding the oldest partial frame past the daemon's budget": 1}
        # The other two are served: their last bytes complete their batches, written and acknowledged.
        for number, client in enumerate(clients[1:], start=1):
            client.send_bytes(frames[number][-1:])
            assert client.next_event() == Ack(seq=1)
        for number, run_id in enumerate(run_ids[1:], start=1):
            assert len(metric_lines(store, run_id, f"k{number}")) == POINTS
    finally:
        for client in clients:
            client.close()
        assert daemon.stop() == 0, daemon.log()
