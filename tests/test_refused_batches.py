"""A batch the daemon refuses whole (bad_frame) is reported once by flush(), never sent again.

The client checks its records as its daemon does, so a batch it built wrong is found by the
client itself. These are the cases it cannot find: a daemon of a later trackd, speaking the same
protocol version, that checks a field more strictly (STRICTER makes one), and a barrier the
daemon declines to hold. Each used to be sent again on every connection: flush() waited out its
timeout, exit spooled the batch, and every later delivery was refused again.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, create_run_record, metric_records

from trackd.client import Client, ClientConfig
from trackd.errors import DeliveryError, TrackdError
from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, RecordKind, encode_frame

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

REFUSED_VALUE = "refused-by-a-later-daemon"
# A daemon of a later trackd that checks tag values more strictly than this client does.
STRICTER = f"""
from trackd.errors import LocalProtocolError
from trackd.protocol import _events
_checked = _events.check_records
def check_records(records):
    for record in records:
        if record[0] == 3 and record[3] == {REFUSED_VALUE!r}:
            raise LocalProtocolError("tag record field 'value' must not be {REFUSED_VALUE}, got {REFUSED_VALUE!r}.")
    return _checked(records)
_events.check_records = check_records
"""
POINTS = 25_000  # before and after the refused tag: each side more than one batch (10,000 records)


@pytest.fixture
def stricter_daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(socket_path, preamble=STRICTER).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def refused_events(failure: str) -> int:
    """The event count a refused batch's sentence names: "batch 7 (1234 events) was refused ..."."""
    return int(failure.split(" events)")[0].rsplit("(", 1)[1])


def log_around_the_refused_tag(client: Client, run_id: str) -> None:
    for step in range(POINTS):
        client.log_metric(run_id, "loss", float(step), step=step)
    client.set_tag(run_id, "verdict", REFUSED_VALUE)
    for step in range(POINTS, 2 * POINTS):
        client.log_metric(run_id, "loss", float(step), step=step)


def assert_written_once_but_the_refused_batch(store: Path, run_id: str, failure: str) -> None:
    """MLflow reads every point once, but the points refused with the tag, and not the tag."""
    reader = MlflowClient(tracking_uri=str(store))
    steps = [m.step for m in reader.get_metric_history(run_id, "loss")]
    assert len(steps) == len(set(steps)) == 2 * POINTS - (refused_events(failure) - 1)
    assert "verdict" not in reader.get_run(run_id).data.tags


@pytest.mark.timeout(120)
def test_a_batch_a_stricter_daemon_refuses_is_reported_by_flush_and_the_rest_written_once(
    stricter_daemon: DaemonProcess, store: Path
) -> None:
    # One send interval a minute: the flush sends every batch at once, the refused one among them.
    config = ClientConfig(socket_path=stricter_daemon.paths.socket, autostart=False, flush_interval=60.0)
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.flush()
        log_around_the_refused_tag(client, run_id)
        with pytest.raises(DeliveryError) as caught:
            client.flush(timeout=60)  # it used to wait all of it, and resend the batch for ever
        (failure,) = caught.value.failures
        assert "was refused whole by the daemon" in failure and f"must not be {REFUSED_VALUE}" in failure
        client.log_metric(run_id, "after", 1.0)
        client.flush(timeout=60)  # reported once; what follows is written
    assert_written_once_but_the_refused_batch(store, run_id, failure)
    assert [m.value for m in MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "after")] == [1.0]


@pytest.mark.timeout(120)
def test_a_spooled_batch_a_stricter_daemon_refuses_is_reported_and_the_spool_file_goes(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # Spooled while no daemon answered, then sent from the spool file to a daemon that refuses it:
    # it went again on every reconnect, and the file stayed for every `trackd sync` to send it.
    spool_dir = tmp_path / "spool"
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=spool_dir)
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        log_around_the_refused_tag(client, run_id)
        with pytest.raises(TrackdError):
            client.flush(timeout=5)  # no daemon: everything goes to the spool file
        assert list(spool_dir.glob("*.spool")), "nothing was spooled"
        daemon = DaemonProcess(socket_path, preamble=STRICTER).start()
        try:
            with pytest.raises(DeliveryError) as caught:
                client.flush(timeout=60)
            (failure,) = caught.value.failures
            assert "was refused whole by the daemon" in failure and f"must not be {REFUSED_VALUE}" in failure
            assert list(spool_dir.glob("*.spool")) == []
            client.close()
        finally:
            assert daemon.stop() == 0, daemon.log()
    assert_written_once_but_the_refused_batch(store, run_id, failure)


@pytest.mark.timeout(120)
def test_trackd_sync_delivers_a_spool_but_the_batch_a_stricter_daemon_refuses_and_says_so(
    stricter_daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The daemon closed the connection at the refused batch: sync failed there, kept the file,
    # and every later sync sent it again, refused again, and never delivered what followed it.
    run_id = "00112233445566778899aabbccddeeff"
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id="exited", pid=1, host=socket.gethostname(), store_root=str(store))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    path = spool_dir / "exited.spool"
    refused = (RecordKind.TAG.value, run_id, "verdict", REFUSED_VALUE)
    path.write_bytes(b"".join([
        encode_frame(hello),
        encode_frame(Batch(seq=1, records=[create_run_record(run_id)])),
        encode_frame(Batch(seq=2, records=metric_records(run_id, "loss", 100))),
        encode_frame(Batch(seq=3, records=[refused])),
        encode_frame(Batch(seq=4, records=metric_records(run_id, "after", 100))),
    ]))
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(stricter_daemon.paths.socket), "--spool-dir", str(spool_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 1, sync.stdout + sync.stderr  # delivered in part: the refused batch is not in the store
    assert "delivered 201 events (3 batches) of client exited" in sync.stdout, sync.stdout
    assert f"batch 3 (1 event) was refused whole by the daemon as malformed: tag record field 'value' must not be {REFUSED_VALUE}" in sync.stderr
    assert not path.exists()
    reader = MlflowClient(tracking_uri=str(store))
    assert [m.step for m in reader.get_metric_history(run_id, "loss")] == list(range(100))
    assert [m.step for m in reader.get_metric_history(run_id, "after")] == list(range(100))
    assert "verdict" not in reader.get_run(run_id).data.tags
