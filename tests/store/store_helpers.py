"""Small builders shared by the store tests."""

from __future__ import annotations

from pathlib import Path

from trackd.store import MetricAppend, NewRun, StoreWriter, WriteBatch

RUN_ID = "3bd6535c03924d04ac5f56e79c702612"
START_MS = 1_700_000_000_000


def new_run(experiment_id: str, run_id: str = RUN_ID, **tags: str) -> NewRun:
    """A NewRun as the daemon sends it, with the system tags the client adds."""
    return NewRun(
        origin="client-1",
        run_id=run_id,
        experiment_id=experiment_id,
        user_id="alice",
        run_name="run-a",
        start_time_ms=START_MS,
        tags={"mlflow.user": "alice", "mlflow.source.type": "LOCAL", **tags},
    )


def writer_with_run(root: Path, run_id: str = RUN_ID) -> tuple[StoreWriter, Path]:
    """A writer on a fresh store, with one experiment and one run; returns the run folder."""
    writer = StoreWriter(root)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id, run_id)])) == []
    return writer, root / experiment_id / run_id


def metrics(key: str, *points: tuple[int, float, int], run_id: str = RUN_ID) -> WriteBatch:
    """A write of ``points`` (timestamp_ms, value, step) to metric ``key`` of ``run_id``."""
    return WriteBatch(metrics={(run_id, key): MetricAppend(run_id, key, list(points), ["o"])})
