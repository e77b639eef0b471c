"""A default end (keep_failure) older than the end a FINISHED run has is stale: the run stays as it is.

A preempted attempt's spooled KILLED, delivered by `trackd sync` after the resumed attempt finished the
run, made the run KILLED with the old end time. An explicit status, and any end of a RUNNING run, are
written whatever their time (a resumed run keeps its old end time until it ends).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from store_helpers import RUN_ID, START_MS, writer_with_run

from trackd.store import RunStatus, Termination, WriteBatch

FINISHED_AT = START_MS + 10_000


def end(status: RunStatus, end_ms: int, *, keep_failure: bool) -> WriteBatch:
    return WriteBatch(terminations=[Termination("o", RUN_ID, int(status), end_ms, keep_failure)])


@pytest.mark.parametrize(
    ("late", "expected"),
    [
        (end(RunStatus.KILLED, FINISHED_AT - 1, keep_failure=True), ("FINISHED", FINISHED_AT)),
        (end(RunStatus.KILLED, FINISHED_AT + 1, keep_failure=True), ("KILLED", FINISHED_AT + 1)),
        (end(RunStatus.KILLED, FINISHED_AT - 1, keep_failure=False), ("KILLED", FINISHED_AT - 1)),
    ],
    ids=["stale-default-end", "later-default-end", "explicit-status"],
)
def test_a_default_end_older_than_the_runs_end_leaves_it_finished(tmp_path: Path, late: WriteBatch, expected: tuple[str, int]) -> None:
    writer, _ = writer_with_run(tmp_path)
    assert writer.write(end(RunStatus.FINISHED, FINISHED_AT, keep_failure=True)) == []
    assert writer.write(late) == []
    info = MlflowClient(tracking_uri=str(tmp_path)).get_run(RUN_ID).info
    assert (info.status, info.end_time) == expected


def test_a_running_run_is_ended_by_a_default_end_older_than_its_last_end(tmp_path: Path) -> None:
    # A resumed run is RUNNING with its last attempt's end time until it ends; a host whose clock is behind still ends it.
    writer, _ = writer_with_run(tmp_path)
    assert writer.write(end(RunStatus.FAILED, FINISHED_AT, keep_failure=False)) == []
    assert writer.write(end(RunStatus.RUNNING, FINISHED_AT, keep_failure=False)) == []
    assert writer.write(end(RunStatus.FINISHED, FINISHED_AT - 1, keep_failure=True)) == []
    info = MlflowClient(tracking_uri=str(tmp_path)).get_run(RUN_ID).info
    assert (info.status, info.end_time) == ("FINISHED", FINISHED_AT - 1)
