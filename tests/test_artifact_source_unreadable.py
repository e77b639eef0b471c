"""An artifact sent by path whose source the daemon cannot read is refused alone, naming the file:
the store is not taken for refusing writes, and every other client's points are written.

A raw-protocol client named /proc/self/mem (a regular file of size 0, which passes every check of
the record and whose read gives EIO). The read error was taken for the store's disk failing: the
daemon held and retried that client's batch for ever, said "The store at ... cannot be written
(Input/output error)" to every client whose events it held, and in its status "still refusing
writes". A flaky disk holding a large file given to log_artifact did the same.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, RawClient, child_env, create_run_record, steps_in_store, wait_for
from test_artifact_location_refused import INNOCENT

from trackd.protocol import Ack, Batch, Event, Flush, FlushDone, RecordKind, Rejected, Welcome

pytestmark = pytest.mark.timeout(90)


def test_an_artifact_whose_source_cannot_be_read_is_refused_naming_it_and_others_are_written(
    store: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool))
    stop = tmp_path / "stop"
    run_id = uuid.uuid4().hex
    with Child(INNOCENT, [str(stop)], env) as innocent:
        wait_for(lambda: any(line.startswith("run ") for line in innocent.out), 30, message="the innocent run")
        guilty = RawClient(daemon.paths.socket)
        try:
            assert isinstance(guilty.hello(str(store), client_id="guilty"), Welcome)
            artifact = (RecordKind.ARTIFACT.value, run_id, "m.bin", None, "/proc/self/mem", None, None)
            guilty.send(Batch(seq=1, records=[create_run_record(run_id), artifact]))
            guilty.send(Flush(request_id=1))
            events: list[Event] = [guilty.next_event()]
            while not isinstance(events[-1], FlushDone):
                events.append(guilty.next_event())
        finally:
            guilty.close()
        stop.touch()
        assert innocent.wait(60) == 0, innocent.stderr()
        status = daemon.status()
    # This used to be ErrorReply(store_unavailable) for ever, and no Ack.
    assert [type(event) for event in events] == [Rejected, Ack, FlushDone], events
    rejected = events[0]
    assert isinstance(rejected, Rejected)
    assert rejected.message == (
        f"Invalid source for artifact 'm.bin' of run {run_id}: '/proc/self/mem' cannot be read (Input/output error)."
    )
    assert innocent.out[-1].startswith("flushed ") and innocent.out[-1] != "flushed -1", innocent.out
    innocent_run, points = innocent.out[0].split()[1], int(innocent.out[-1].split()[1])
    assert steps_in_store(store, innocent_run) == list(range(points))
    assert innocent.err == [], innocent.err
    assert status["write_errors"] == 0 and status["backlog_records"] == 0, status
    assert not any("cannot be written" in error for error in status["errors"]), status
