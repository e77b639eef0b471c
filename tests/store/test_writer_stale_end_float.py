"""A stale default end leaves a FINISHED run alone when its meta.yaml holds a float end_time too.

MLflow's reader takes ``end_time: 1795867870391.5`` as it is (a meta.yaml edited by hand or written
by another tool). The stale-end rule compared only int end times, so a preempted attempt's spooled
KILLED delivered late made such a run KILLED with the older end time.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlflow.tracking import MlflowClient
from store_helpers import RUN_ID, START_MS, writer_with_run

from trackd.store import RunStatus, StoreWriter, Termination, WriteBatch

FINISHED_AT = START_MS + 10_000


def test_a_stale_default_end_leaves_a_run_finished_at_a_float_end_time(tmp_path: Path) -> None:
    writer, run_folder = writer_with_run(tmp_path)
    ended = Termination("o", RUN_ID, int(RunStatus.FINISHED), FINISHED_AT, keep_failure=True)
    assert writer.write(WriteBatch(terminations=[ended])) == []
    writer.close()
    meta = run_folder / "meta.yaml"
    meta.write_text(re.sub(rf"(?m)^end_time: {FINISHED_AT}$", f"end_time: {FINISHED_AT}.5", meta.read_text()))

    stale = Termination("o", RUN_ID, int(RunStatus.KILLED), FINISHED_AT - 1, keep_failure=True)
    assert StoreWriter(tmp_path).write(WriteBatch(terminations=[stale])) == []
    info = MlflowClient(tracking_uri=str(tmp_path)).get_run(RUN_ID).info
    assert (info.status, info.end_time) == ("FINISHED", FINISHED_AT + 0.5)
