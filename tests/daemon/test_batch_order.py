"""On one connection a client's batch numbers only go up; a resend after a reconnect keeps working.

The daemon took any batch numbered at or below the highest it had received from the client as a
resend after a reconnect: skipped, and acknowledged with the later batch. On one connection no
client sends one (a resend goes on a new connection, in the order of its numbers), so a batch
numbered lower than one already sent on it was acknowledged without ever being written. It is a
protocol error now: ``bad_frame``, the connection closed, and no Ack covers it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_records, steps_in_store, wait_for

from trackd.protocol import Ack, Batch, ConnectionClosed, ErrorCode, ErrorReply, Event, Flush, FlushDone, RecordKind, Welcome

pytestmark = pytest.mark.timeout(60)


def param(run_id: str, key: str) -> tuple[object, ...]:
    return (RecordKind.PARAM.value, run_id, key, "1")


def replies_to_flush(raw: RawClient) -> list[Event]:
    """The daemon's replies up to its FlushDone, or to its closing the connection."""
    replies: list[Event] = []
    while not isinstance(event := raw.next_event(), ConnectionClosed):
        replies.append(event)
        if isinstance(event, FlushDone):
            break
    return replies


@pytest.mark.parametrize(
    ("seqs", "said", "written"),
    [
        # Before: [Ack(seq=3), FlushDone(request_id=1, acked_seq=3)], and no param "p2" in the store.
        ([1, 3, 2], "Batch.seq 2 arrived after batch 3 on this connection; expected a seq above 3", ["p3"]),
        # Before: [Ack(seq=1), FlushDone(request_id=1, acked_seq=1)], and no param "p1" in the store.
        ([1, 1], "Batch.seq 1 arrived after batch 1 on this connection; expected a seq above 1", []),
    ],
)
def test_a_batch_numbered_at_or_below_one_sent_on_the_same_connection_is_refused(
    socket_path: Path, store: Path, seqs: list[int], said: str, written: list[str]
) -> None:
    # --max-age 60: nothing is written before the close (the Flush that would ask for a write is
    # not read), so the daemon had skipped the last batch as a resend of one it held unwritten.
    daemon = DaemonProcess(socket_path, "--max-age", "60").start()
    try:
        run_id = uuid.uuid4().hex
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store), client_id="backwards"), Welcome)
        raw.send(Batch(seq=seqs[0], records=[create_run_record(run_id)]))
        for seq in seqs[1:]:
            raw.send(Batch(seq=seq, records=[param(run_id, f"p{seq}")]))
        raw.send(Flush(request_id=1))
        replies = replies_to_flush(raw)
        raw.close()
        assert len(replies) == 1, replies
        (error,) = replies
        assert isinstance(error, ErrorReply) and (error.request_id, error.code) == (0, ErrorCode.BAD_FRAME), replies
        assert said in error.message
        assert "broke the protocol" in daemon.log()
        assert daemon.status()["protocol_errors"] == 1
        # The batches received before it are written, as a resend of them on a new connection would be skipped.
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store), client_id="backwards"), Welcome)
        raw.send(Flush(request_id=2))
        assert raw.replies_until_ack(max(seqs)) == []
        assert raw.next_event() == FlushDone(request_id=2, acked_seq=max(seqs))
        raw.close()
        assert sorted(path.name for path in (store / "0" / run_id / "params").glob("*")) == written
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_resend_on_a_new_connection_is_skipped_and_acknowledged(socket_path: Path, store: Path) -> None:
    # What a real client does after a reconnect: the batches not acknowledged go again, with their
    # numbers, on the new connection, whether or not the daemon holds them (received, not written yet).
    daemon = DaemonProcess(socket_path, "--max-age", "60").start()
    try:
        run_id = uuid.uuid4().hex
        first = RawClient(socket_path)
        assert isinstance(first.hello(str(store), client_id="resends"), Welcome)
        first.send(Batch(seq=1, records=[create_run_record(run_id)]))
        first.send(Batch(seq=2, records=metric_records(run_id, "x", 10)))
        wait_for(lambda: daemon.status()["records_received"] == 11, message="both batches received")
        second = RawClient(socket_path)  # takes the session over before anything was written
        welcome = second.hello(str(store), client_id="resends")
        assert isinstance(welcome, Welcome) and welcome.resume_seq == 0, welcome
        first.close()
        second.send(Batch(seq=1, records=[create_run_record(run_id)]))
        second.send(Batch(seq=2, records=metric_records(run_id, "x", 10)))
        second.send(Batch(seq=3, records=[param(run_id, "after")]))
        second.send(Flush(request_id=1))
        assert second.replies_until_ack(3) == []
        assert second.next_event() == FlushDone(request_id=1, acked_seq=3)
        second.close()
        assert steps_in_store(store, run_id) == list(range(10))  # written once
        assert (store / "0" / run_id / "params" / "after").read_text() == "1"
        assert daemon.status()["records_received"] == 12 and daemon.status()["protocol_errors"] == 0
    finally:
        assert daemon.stop() == 0, daemon.log()
