"""A client that shuts its sending side down after its last batch and Flush still gets its replies.

The daemon closed the connection as soon as the client's stream ended: a client that sent a batch
and a Flush, then ``shutdown(SHUT_WR)``, and read to the end got no Ack and no FlushDone (the
batch was written all the same). Now the connection stays open until what the client sent is
answered, then closes.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_records, steps_in_store
from mlflow.tracking import MlflowClient

from trackd.protocol import Ack, Batch, Flush, FlushDone, Welcome

pytestmark = pytest.mark.timeout(60)


def test_a_client_done_sending_gets_its_ack_and_flush_done(socket_path: Path, store: Path) -> None:
    # --max-age 60: the batch waits in the batcher until the Flush asks for its write, which then
    # runs while the daemon reads the end of the stream.
    daemon = DaemonProcess(socket_path, "--max-age", "60").start()
    try:
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store), client_id="half-closed"), Welcome)
        run_id = uuid.uuid4().hex
        frames = raw.protocol.send(Batch(seq=1, records=[create_run_record(run_id)]))
        frames += raw.protocol.send(Batch(seq=2, records=metric_records(run_id, "x", 1000)))
        frames += raw.protocol.send(Flush(request_id=7))
        raw.send_bytes(frames)
        raw.sock.shutdown(socket.SHUT_WR)
        replies = raw.events_until_closed()  # the daemon closes once it has answered
        raw.close()
        # Before: [] (the connection was closed at the end of the client's stream).
        assert replies[-1] == FlushDone(request_id=7, acked_seq=2), replies
        assert Ack(seq=2) in replies, replies
        assert steps_in_store(store, run_id) == list(range(1000))
        assert MlflowClient(tracking_uri=f"file:{store}").get_run(run_id).info.status == "RUNNING"
        assert daemon.status()["clients_connected"] == 0  # and then it closed
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_client_done_sending_with_everything_written_is_closed_at_once(socket_path: Path, store: Path) -> None:
    # Nothing owed: its stream's end closes the connection, as before.
    daemon = DaemonProcess(socket_path).start()
    try:
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store), client_id="done"), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(uuid.uuid4().hex)]))
        raw.send(Flush(request_id=1))
        assert raw.replies_until_ack(1) == []
        assert raw.next_event() == FlushDone(request_id=1, acked_seq=1)
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.events_until_closed() == []
        raw.close()
    finally:
        assert daemon.stop() == 0, daemon.log()
