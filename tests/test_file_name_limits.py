"""Names longer than a file name may be (255 bytes, NAME_MAX) cost only themselves, never their neighbours.

A run id, an experiment id, each '/'-separated part of a key and of an artifact path names a file
or folder in the store. MLflow limits keys to 250 characters, not bytes: 250 CJK characters are 750
bytes in UTF-8. Such a name used to pass the call site, and the daemon's write then failed with
"File name too long", taking every record of that write down with it. The client now refuses it
where it is logged, and the daemon (which checks with the same functions) refuses only that record.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_lines, metric_records

from trackd import Client, ClientConfig, InvalidArgument
from trackd.protocol import Ack, Batch, Event, RecordKind, Rejected, Welcome

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

CJK_KEY = "汉" * 250  # 250 characters, as MLflow allows; 750 bytes
LONG_RUN_ID = "a" * 256  # MLflow's _RUN_ID_REGEX takes it; no folder can be named so


class Tag(NamedTuple):
    """A tag for log_batch, as mlflow.entities.RunTag."""

    key: str
    value: str


def _replies_until_ack(raw: RawClient, seq: int) -> list[Event]:
    events = []
    while (event := raw.next_event()) != Ack(seq=seq):
        events.append(event)
    return events


def test_the_daemon_refuses_only_the_records_whose_names_cannot_be_files(daemon: DaemonProcess, store: Path) -> None:
    # A client of another version (or a spool written before this check) sends them anyway.
    run_id = uuid.uuid4().hex
    point = (RecordKind.METRIC.value, run_id, CJK_KEY, 1.0, 1_700_000_000_000, 0)
    bad = [
        point,
        create_run_record(LONG_RUN_ID),
        (RecordKind.PARAM.value, run_id, "é" * 200, "v"),
        (RecordKind.ARTIFACT.value, run_id, "notes/" + "汉" * 90 + ".txt", b"x", None, None),
    ]
    good = [*metric_records(run_id, "loss", 3), (RecordKind.TAG.value, run_id, "stage", "dev")]
    raw = RawClient(daemon.paths.socket, timeout=10.0)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), good[0], *bad, *good[1:]]))
        replies = _replies_until_ack(raw, 1)
    finally:
        raw.close()
    assert all(isinstance(r, Rejected) for r in replies), replies
    messages = sorted(r.message for r in replies if isinstance(r, Rejected))
    assert len(messages) == len(bad), messages
    assert all("at most 255 bytes" in m for m in messages), messages
    # The rest of the batch is written: it used to be lost whole ("The store ... could not be written").
    assert len(metric_lines(store, run_id, "loss")) == 3
    assert (store / "0" / run_id / "tags" / "stage").read_text() == "dev"
    assert not any((store / "0" / run_id / "artifacts").iterdir())


def test_a_name_too_long_for_a_file_raises_where_it_is_logged_and_costs_nothing_else(daemon: DaemonProcess, store: Path) -> None:
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False)
    with Client(store, config=config) as client:
        run_id = client.create_run(run_name="cjk").info.run_id
        client.log_metric(run_id, "before", 1.0)
        with pytest.raises(InvalidArgument, match="750 bytes"):
            client.log_metric(run_id, CJK_KEY, 1.0)
        with pytest.raises(InvalidArgument, match="256 bytes"):
            client.create_run(run_id=LONG_RUN_ID)
        client.log_metric(run_id, "汉" * 85, 2.0)  # 255 bytes: the longest a name may be
        client.log_metric(run_id, "after", 3.0)
        client.flush(timeout=30)
    run = MlflowClient(tracking_uri=store.as_uri()).get_run(run_id)
    assert run.data.metrics == {"before": 1.0, "汉" * 85: 2.0, "after": 3.0}


def test_tags_too_large_for_a_run_creation_arrive_whole_through_log_batch(daemon: DaemonProcess, store: Path) -> None:
    # What the refusal of create_run(tags=...) past 8 MiB says to do: the tags travel one record
    # each, in as many batches as it takes (24 MB here), and the run's points are not lost with them.
    tags = {f"t{i}": "汉" * 8000 for i in range(999)}
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False)
    with Client(store, config=config) as client:
        with pytest.raises(InvalidArgument, match="set_tag, set_tags or log_batch"):
            client.create_run(tags=tags)
        run_id = client.create_run(run_name="tagged").info.run_id
        client.log_batch(run_id, tags=[Tag(k, v) for k, v in tags.items()])
        client.log_metric(run_id, "loss", 0.5)
        client.flush(timeout=60)
    run = MlflowClient(tracking_uri=store.as_uri()).get_run(run_id)
    assert run.data.metrics == {"loss": 0.5}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == tags
