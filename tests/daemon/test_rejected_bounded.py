"""A client's refused items cost the daemon bounded replies, and each is still counted.

A Rejected went out for every refused item, whatever the client had left unread: batches of
50,000 params for a missing run, never read, took the daemon to ~500 MB of replies. Now the first
100 of a batch are named, none while more than 1 MiB of replies wait unread, and one more
Rejected counts the rest.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, wait_for
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from trackd import Client, DeliveryError
from trackd.daemon._connection import MAX_UNREAD_REPLY_BYTES
from trackd.protocol import Batch, Flush, FlushDone, RecordKind, Rejected, Welcome, encode_frame

pytestmark = pytest.mark.timeout(120)

NAMED = 100  # daemon/_acks.NAMED


def params(run_id: str, count: int, key_length: int = 8) -> list[tuple[object, ...]]:
    return [(RecordKind.PARAM.value, run_id, f"p{i}".ljust(key_length, "k"), "1") for i in range(count)]


def test_a_batchs_refusals_past_the_first_100_are_counted_in_one_reply(socket_path: Path, store: Path) -> None:
    daemon = DaemonProcess(socket_path).start()
    try:
        raw = RawClient(socket_path)
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=params(uuid.uuid4().hex, 5000)))
        replies = raw.replies_until_ack(1)
        raw.close()
        assert all(isinstance(reply, Rejected) for reply in replies), replies
        rejected = [reply for reply in replies if isinstance(reply, Rejected)]
        # This used to be 5,000 replies, one per refused param.
        assert len(rejected) == NAMED + 1, len(rejected)
        assert [reply.items for reply in rejected[:-1]] == [1] * NAMED
        rest = rejected[-1]
        assert rest.item == "4900 more items of batch 1" and rest.items == 4900 and rest.events == 4900, rest
        assert rest.message.startswith("not named one by one: the daemon names at most 100 refused items of a batch"), rest
        assert "the first of them: param 'p100kkkk' of run" in rest.message, rest
        assert sum(reply.items for reply in rejected) == 5000 == daemon.status()["items_rejected"]
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_refusals_are_not_named_while_the_client_leaves_its_replies_unread(socket_path: Path, store: Path) -> None:
    # 4,000 refused params of long keys, a reply of ~1.2 KB each (~4.7 MB in all), in batches of
    # 100 (none past the per-batch count): written in one write at the Flush (fewer than the 4,096
    # events that start a write at once; --max-age 60), so their replies all wait unread.
    daemon = DaemonProcess(socket_path, "--max-age", "60").start()
    try:
        raw = RawClient(socket_path, timeout=60)
        assert isinstance(raw.hello(str(store)), Welcome)
        run_id = uuid.uuid4().hex
        for seq in range(1, 41):
            raw.send(Batch(seq=seq, records=params(run_id, 100, key_length=1000)))
        raw.send(Flush(request_id=1))
        # Read only once the daemon has refused them all: read while it writes, the replies never
        # waited unread (the test passed or failed with how busy the machine was).
        wait_for(lambda: daemon.status()["items_rejected"] == 4000, 60, message="the 4,000 refusals")
        replies = []
        while not isinstance(reply := raw.next_event(), FlushDone):
            replies.append(reply)
        raw.close()
        rejected = [reply for reply in replies if isinstance(reply, Rejected)]
        # What the kernel's socket buffer took (a few hundred KB), then 1 MiB, then one that counts the rest.
        replied = sum(len(encode_frame(reply)) for reply in rejected)
        assert replied < 2 * MAX_UNREAD_REPLY_BYTES, replied  # was ~4.7 MB
        assert sum(reply.items for reply in rejected) == 4000 == daemon.status()["items_rejected"]
        assert sum(reply.events for reply in rejected) == 4000
        rest = rejected[-1]
        assert rest.items > 1 and rest.item == f"{rest.items} more items of batches {rest.item.split()[-3]} to 40", rest
        assert len(rejected) == 4000 - rest.items + 1
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_clients_flush_counts_every_refused_item(store: Path, client: Client, daemon: DaemonProcess) -> None:
    # The 300 keys of one batch refused: 100 named, 200 counted in one reply; flush() counts 300.
    run_id = client.create_run().info.run_id
    client.flush()
    MlflowClient(tracking_uri=f"file:{store}").delete_run(run_id)
    client.log_batch(run_id, params=[Param(f"k{i:03}", "1") for i in range(300)])
    with pytest.raises(DeliveryError) as caught:
        client.flush()
    assert daemon.status()["items_rejected"] == 300
    assert str(caught.value).startswith("300 logged items, 300 events, will not be written: param 'k000'"), caught.value
    assert str(caught.value).endswith("(and 299 more)"), caught.value
    failures = caught.value.failures
    assert len(failures) == 101, failures
    assert failures[100] == "... and 200 more refused items (200 events) not listed", failures
    assert client.stats()["rejected"] == 300
