"""What an operator reads of refusals: one log line each, and the counts in ``trackd daemon status``."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, refusal, wait_for

from trackd.protocol import Ack, Batch, ErrorCode, ErrorReply, RecordKind, Rejected, Welcome

pytestmark = pytest.mark.timeout(60)


def status_text(socket_path: Path) -> str:
    """What ``trackd daemon status`` prints."""
    result = subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(socket_path)], capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_process_refused_over_max_connections_is_logged_once_and_counted_in_status(socket_path: Path, store: Path) -> None:
    # A client over the limit tries again every 2 s while it runs: each attempt logged a line, and
    # the human status said nothing of the refusals (only --json had connections_refused).
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    try:
        holder = RawClient(socket_path)
        try:
            assert isinstance(holder.hello(str(store)), Welcome)
            for _ in range(3):
                reply = refusal(socket_path)
                assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS
        finally:
            holder.close()
        wait_for(lambda: daemon.status()["clients_connected"] == 0, message="the holder to leave")
        out = status_text(socket_path)
        assert re.search(r"rejected .*; connections refused 3\n", out), out
        assert daemon.log().count("Refused a connection (too_many_connections)") == 1
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_the_first_item_the_store_refuses_for_a_client_is_logged_once(daemon: DaemonProcess, store: Path) -> None:
    # A refused item was said only to its client (flush() raises DeliveryError): status counted
    # it, and the log said nothing of which item it was or why.
    run_id = uuid.uuid4().hex
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), (RecordKind.PARAM.value, run_id, "lr", "0.1")]))
        assert raw.next_event() == Ack(seq=1)
        for seq, value in ((2, "0.2"), (3, "0.3")):
            raw.send(Batch(seq=seq, records=[(RecordKind.PARAM.value, run_id, "lr", value)]))
            rejected = raw.next_event()
            assert isinstance(rejected, Rejected) and rejected.seq == seq
            assert raw.next_event() == Ack(seq=seq)
    finally:
        raw.close()
    # The totals counted them; which client they came from was only in --json.
    out = status_text(daemon.paths.socket)
    assert "gone, everything it sent written, 2 events rejected, store" in out, out
    lines = [line for line in daemon.log().splitlines() if "the store refused" in line]
    assert len(lines) == 1, lines
    assert (
        f"the store refused param 'lr' of run {run_id} (its later refusals are counted in status, not logged): "
        "Changing param values is not allowed"
    ) in lines[0]
