"""Plain values the store reads and writes: MLflow's entities, and the write-side items of a batch.

The store never interprets ``origin``: it is an opaque hashable that the daemon attaches to an item so
that a failure can be routed back to the client that sent it.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field

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


# --- write side ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewRun:
    """Create a run unless it already exists in that experiment ("ensure": every rank sends one)."""

    origin: Hashable
    run_id: str
    experiment_id: str
    user_id: str
    run_name: str
    start_time_ms: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ParamWrite:
    """Log a param; params are immutable once logged."""

    origin: Hashable
    run_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class TagWrite:
    """Set a run tag, or delete it when value is None."""

    origin: Hashable
    run_id: str
    key: str
    value: str | None


@dataclass(slots=True)
class MetricAppend:
    """Every point of one metric of one run in a batch, appended in one write()."""

    run_id: str
    key: str
    points: list[tuple[int, float, int]] = field(default_factory=list)  # (timestamp_ms, value, step)
    origins: list[Hashable] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ArtifactWrite:
    """Store a file under the run's artifacts: exactly one of content and source_path is set."""

    origin: Hashable
    run_id: str
    path: str
    content: bytes | None = None
    source_path: str | None = None


@dataclass(frozen=True, slots=True)
class Termination:
    """Set a run's final status and end time."""

    origin: Hashable
    run_id: str
    status: int
    end_time_ms: int


@dataclass(slots=True)
class WriteBatch:
    """What StoreWriter.write applies, in this field order."""

    new_runs: list[NewRun] = field(default_factory=list)
    params: list[ParamWrite] = field(default_factory=list)
    tags: list[TagWrite] = field(default_factory=list)
    metrics: dict[tuple[str, str], MetricAppend] = field(default_factory=dict)
    artifacts: list[ArtifactWrite] = field(default_factory=list)
    terminations: list[Termination] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """One item the store could not write: ``item`` names it, ``message`` is a sentence saying why."""

    origin: Hashable
    item: str
    message: str
