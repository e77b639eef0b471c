"""Each connection's budget of decode work: the token bucket (time passed in), and a real daemon
pausing a connection over its budget only while another client waits on a flush."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_lines, metric_records, wait_for

import trackd
from trackd.client import ClientConfig
from trackd.daemon._budget import BURST_SECONDS, DecodeBudget
from trackd.protocol import Ack, Batch, Flush, FlushDone, Welcome

pytestmark = pytest.mark.timeout(120)


def test_a_full_bucket_lets_a_burst_through_without_delay() -> None:
    budget = DecodeBudget.full(1000, now=0.0)
    budget.spend(int(1000 * BURST_SECONDS), now=0.0)
    assert budget.delay(now=0.0) == 0.0


def test_spending_past_the_bucket_owes_the_debt_at_the_rate() -> None:
    budget = DecodeBudget.full(1000, now=0.0)
    budget.spend(int(1000 * BURST_SECONDS) + 250, now=0.0)
    assert budget.delay(now=0.0) == pytest.approx(0.25)
    assert budget.delay(now=0.1) == pytest.approx(0.15)
    assert budget.delay(now=0.25) == 0.0


def test_the_bucket_refills_only_up_to_the_burst() -> None:
    budget = DecodeBudget.full(1000, now=0.0)
    budget.spend(int(1000 * BURST_SECONDS), now=0.0)
    budget.spend(0, now=100.0)  # a long quiet spell
    budget.spend(int(1000 * BURST_SECONDS) + 100, now=100.0)
    assert budget.delay(now=100.0) == pytest.approx(0.1)


def test_forgive_cancels_the_debt_but_keeps_tokens() -> None:
    budget = DecodeBudget.full(1000, now=0.0)
    budget.spend(10_000, now=0.0)
    budget.forgive()
    assert budget.delay(now=0.0) == 0.0
    fresh = DecodeBudget.full(1000, now=0.0)
    fresh.forgive()
    assert fresh.tokens == 1000 * BURST_SECONDS


@pytest.mark.parametrize("rate", [0, -5])
def test_a_budget_must_allow_some_events(rate: float) -> None:
    with pytest.raises(ValueError, match="must allow some events per second"):
        DecodeBudget.full(rate, now=0.0)


# -- a real daemon -----------------------------------------------------------------------------

# Low enough that the flooder below is over it within its first batches.
RATE = 20_000
BATCHES = 200
POINTS = 1000


def until_flush_done(raw: RawClient) -> FlushDone:
    """Read the daemon's replies up to the FlushDone."""
    while not isinstance(event := raw.next_event(), FlushDone):
        assert isinstance(event, Ack), event
    return event


def flood(raw: RawClient, run_id: str) -> None:
    """Send BATCHES batches of POINTS points as fast as the socket takes them (blocking when it is full), then a flush."""
    for seq in range(2, BATCHES + 2):
        raw.send(Batch(seq=seq, records=metric_records(run_id, "flood", POINTS)))
    raw.send(Flush(request_id=1))


def test_a_connection_alone_is_never_paused_whatever_its_rate(socket_path: Path, store: Path) -> None:
    daemon = DaemonProcess(socket_path, "--max-events-per-second", "1000").start()
    raw = RawClient(socket_path, timeout=60)
    try:
        assert isinstance(raw.hello(str(store), client_id="alone"), Welcome)
        run_id = uuid.uuid4().hex
        raw.send(Batch(seq=1, records=[create_run_record(run_id)]))
        flood(raw, run_id)
        assert until_flush_done(raw).acked_seq == BATCHES + 1
    finally:
        raw.close()
    # 200,000 events at a budget of 1,000 per second, and never a pause: nobody else waited.
    assert daemon.status()["throttled"] == 0
    assert len(metric_lines(store, run_id, "flood")) == BATCHES * POINTS
    assert daemon.stop() == 0, daemon.log()


def test_a_connection_over_its_budget_pauses_while_a_neighbour_flushes_then_resumes(socket_path: Path, store: Path) -> None:
    daemon = DaemonProcess(socket_path, "--max-events-per-second", str(RATE)).start()
    raw = RawClient(socket_path, timeout=60)
    try:
        assert isinstance(raw.hello(str(store), client_id="flooder"), Welcome)
        flood_run = uuid.uuid4().hex
        raw.send(Batch(seq=1, records=[create_run_record(flood_run)]))
        assert raw.next_event() == Ack(seq=1)
        sender = threading.Thread(target=flood, args=(raw, flood_run), daemon=True)
        config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=5.0)
        with trackd.Client(str(store), config=config) as client:
            run_id = client.create_run("0").info.run_id
            step = 0

            def log_and_flush(rounds: int) -> None:
                nonlocal step
                for _ in range(rounds):
                    for _ in range(10):
                        client.log_metric(run_id, "loss", 0.5, step=step)
                        step += 1
                    client.flush(timeout=30)

            sender.start()
            # The neighbour keeps flushing: each flush is a client waiting on the daemon, so the
            # flooder, over its budget after its first batches, is paused.
            def paused() -> bool:
                log_and_flush(10)
                return int(daemon.status()["throttled"]) > 0

            wait_for(paused, timeout=60, message="the flooder to be paused")
            log_and_flush(20)  # served while the flooder is held back
            flooder = client_entry(daemon, f"{os.getpid()}@test")
            # Its BATCHES * POINTS points need 10 s at RATE: it is still being held back.
            assert flooder["received_seq"] < BATCHES + 1
        # Nobody waits any more: the flooder resumes and every point it sent arrives.
        assert until_flush_done(raw).acked_seq == BATCHES + 1
        sender.join(10)
    finally:
        raw.close()
    # Every point once, in the order sent, though its writes went in turns cut short by the flushes.
    steps = [int(line.split()[2]) for line in metric_lines(store, flood_run, "flood")]
    assert steps == list(range(POINTS)) * BATCHES
    assert len(metric_lines(store, run_id, "loss")) == step
    flooder = client_entry(daemon, f"{os.getpid()}@test")
    assert flooder["throttled"] >= 1 and flooder["throttled_s"] > 0
    assert daemon.log().count("decodes more than its budget") == 1
    assert daemon.stop() == 0, daemon.log()


def client_entry(daemon: DaemonProcess, pid_host: str) -> dict[str, Any]:
    """The flooder's entry in the daemon's status (the RawClient says host "test")."""
    entries = [c for c in daemon.status()["clients"] if f"{c['pid']}@{c['host']}" == pid_host]
    assert len(entries) == 1, entries
    return dict(entries[0])
