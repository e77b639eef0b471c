"""MLflow's entities as the store reads them: experiments, runs, their info, data and metrics.

What the daemon asks the store to write (NewRun, MetricAppend, WriteBatch...) lives in
``_write_items.py``: a training process reads runs but never writes the store itself, so it
does not create those classes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

LIFECYCLE_ACTIVE = "active"
LIFECYCLE_DELETED = "deleted"
# The system tag that mirrors run_name; FileStore.set_tag rewrites meta.yaml when it is set.
RUN_NAME_TAG = "mlflow.runName"


class RunStatus(enum.IntEnum):
    """MLflow's run status, stored in meta.yaml as this int (``status: 3``)."""

    RUNNING = 1
    SCHEDULED = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment as meta.yaml and its tags/ folder describe it."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int | None
    last_update_time: int | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run's meta.yaml."""

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: RunStatus
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str


@dataclass(frozen=True, slots=True)
class RunData:
    """A run's latest metric values, params and tags."""

    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class Run:
    """A run: its info and its data."""

    info: RunInfo
    data: RunData


@dataclass(frozen=True, slots=True)
class Metric:
    """One line of a metric file."""

    key: str
    value: float
    timestamp: int
    step: int

