"""MLflow's entities as the store reads them: experiments, runs, their info, data and metrics, artifact listings;
and the params and tags ``log_batch`` takes (``trackd.entities`` gives them all under MLflow's names).

What the daemon asks the store to write (NewRun, MetricAppend, WriteBatch...) lives in
``_write_items.py``: a training process reads runs but never writes the store itself, so it
does not create those classes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .._struct import Frozen
from ..errors import InvalidArgument

T = TypeVar("T")

LIFECYCLE_ACTIVE = "active"
LIFECYCLE_DELETED = "deleted"
# The system tag that mirrors run_name; FileStore.set_tag rewrites meta.yaml when it is set.
RUN_NAME_TAG = "mlflow.runName"
# The tag, beside MLflow's own mlflow.* system tags, that says why the daemon failed a run (its
# process exited without ending it); the only tag trackd writes on failing a run. A resume that
# makes the run RUNNING again removes it: MLflow keeps no history of a run's past ends.
FAILURE_REASON_TAG = "trackd.failure_reason"


class RunStatus(enum.IntEnum):
    """MLflow's run status, stored in meta.yaml as this int (``status: 3``).

    ``RunInfo.status`` holds the member's name (``"FINISHED"``), as MLflow's does
    (``RunStatus.to_string``); the int appears only in meta.yaml and on the wire.
    """

    RUNNING = 1
    SCHEDULED = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5

    # MLflow's RunStatus helpers, in its words, for code ported with `import trackd as mlflow`
    # (`mlflow.entities.RunStatus.to_string(...)` raised AttributeError).
    @staticmethod
    def from_string(status_str: str) -> int:
        """The status named ``status_str`` ("FINISHED"), as an int."""
        if status_str not in RunStatus.__members__:
            raise ValueError(
                f"Could not get run status corresponding to string {status_str}. Valid run "
                f"status strings: {list(RunStatus.__members__)}"
            )
        return int(RunStatus[status_str])

    @staticmethod
    def to_string(status: int) -> str:
        """The name of the status ``status`` (3 -> "FINISHED")."""
        if status not in RunStatus.all_status():
            raise ValueError(
                f"Could not get string corresponding to run status {status}. Valid run "
                f"statuses: {RunStatus.all_status()}"
            )
        return RunStatus(status).name

    @staticmethod
    def is_terminated(status: int) -> bool:
        """Whether ``status`` is an end (FINISHED, FAILED, KILLED)."""
        return status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)

    @staticmethod
    def all_status() -> list[int]:
        """Every status, as ints."""
        return [int(status) for status in RunStatus]


class ViewType(enum.IntEnum):
    """Which lifecycle stages a search returns; MLflow's ``mlflow.entities.ViewType`` values."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    def matches(self, lifecycle_stage: str) -> bool:
        """Whether an entity in ``lifecycle_stage`` is in this view (LifecycleStage.matches_view_type)."""
        if self is ViewType.ALL:
            return True
        return lifecycle_stage == (LIFECYCLE_ACTIVE if self is ViewType.ACTIVE_ONLY else LIFECYCLE_DELETED)


_set = object.__setattr__


class Experiment(Frozen):
    """An experiment as meta.yaml and its tags/ folder describe it."""

    __slots__ = (
        "experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time", "tags",
    )
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int | None
    last_update_time: int | None
    tags: dict[str, str]

    def __init__(
        self, experiment_id: str, name: str, artifact_location: str, lifecycle_stage: str,
        creation_time: int | None, last_update_time: int | None, tags: dict[str, str],
    ) -> None:
        _set(self, "experiment_id", experiment_id)
        _set(self, "name", name)
        _set(self, "artifact_location", artifact_location)
        _set(self, "lifecycle_stage", lifecycle_stage)
        _set(self, "creation_time", creation_time)
        _set(self, "last_update_time", last_update_time)
        _set(self, "tags", tags)


class RunInfo(Frozen):
    """A run's meta.yaml; ``status`` is a RunStatus name ("RUNNING", "FINISHED"...), as in MLflow."""

    __slots__ = (
        "run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time", "artifact_uri",
        "lifecycle_stage",
    )
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    # A float where MLflow wrote one (create_run(start_time=time.time() * 1000)), as MLflow reads it.
    start_time: int | float
    end_time: int | float | None  # a float too, edited into meta.yaml by hand or a tool
    artifact_uri: str
    lifecycle_stage: str

    def __init__(
        self, run_id: str, experiment_id: str, run_name: str, user_id: str, status: str, start_time: int | float,
        end_time: int | float | None, artifact_uri: str, lifecycle_stage: str,
    ) -> None:
        _set(self, "run_id", run_id)
        _set(self, "experiment_id", experiment_id)
        _set(self, "run_name", run_name)
        _set(self, "user_id", user_id)
        _set(self, "status", status)
        _set(self, "start_time", start_time)
        _set(self, "end_time", end_time)
        _set(self, "artifact_uri", artifact_uri)
        _set(self, "lifecycle_stage", lifecycle_stage)


class RunData(Frozen):
    """A run's latest metric values, params and tags."""

    __slots__ = ("metrics", "params", "tags")
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]

    def __init__(self, metrics: dict[str, float], params: dict[str, str], tags: dict[str, str]) -> None:
        _set(self, "metrics", metrics)
        _set(self, "params", params)
        _set(self, "tags", tags)


class Run(Frozen):
    """A run: its info and its data."""

    __slots__ = ("info", "data")
    info: RunInfo
    data: RunData

    def __init__(self, info: RunInfo, data: RunData) -> None:
        _set(self, "info", info)
        _set(self, "data", data)


class Metric(Frozen):
    """One point of a metric: a line of its file, and what ``log_batch`` takes (``mlflow.entities.Metric``).

    MLflow 3's fields and order: ``model_id``, ``dataset_name`` and ``dataset_digest`` link the
    point to a logged model and a dataset (a line of 5 fields carries the dataset's two), and
    ``run_id`` is the run it was read from: ``get_metric_history`` sets it, as MLflow's
    FileStore does. Each is None unless given; trackd logs none of the first three.
    """

    __slots__ = ("key", "value", "timestamp", "step", "model_id", "dataset_name", "dataset_digest", "run_id")
    key: str
    value: float
    timestamp: int
    step: int
    model_id: str | None
    dataset_name: str | None
    dataset_digest: str | None
    run_id: str | None

    def __init__(
        self, key: str, value: float, timestamp: int, step: int, model_id: str | None = None,
        dataset_name: str | None = None, dataset_digest: str | None = None, run_id: str | None = None,
    ) -> None:
        if (dataset_name is None) != (dataset_digest is None):
            # MLflow's check and words (mlflow.entities.Metric.__init__, INVALID_PARAMETER_VALUE).
            raise InvalidArgument("Both dataset_name and dataset_digest must be provided if one is provided")
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "timestamp", timestamp)
        _set(self, "step", step)
        _set(self, "model_id", model_id)
        _set(self, "dataset_name", dataset_name)
        _set(self, "dataset_digest", dataset_digest)
        _set(self, "run_id", run_id)

    def to_dictionary(self) -> dict[str, Any]:
        """Every field by name, as MLflow's ``Metric.to_dictionary()`` (the four optional ones included, None or not)."""
        return {name: getattr(self, name) for name in self._fields}

    @classmethod
    def from_dictionary(cls, metric_dict: Mapping[str, Any]) -> Metric:
        """The Metric ``to_dictionary()`` gave, as MLflow's ``Metric.from_dictionary``."""
        missing = [key for key in ("key", "value", "timestamp", "step") if key not in metric_dict]
        if missing:
            raise InvalidArgument(f"Missing required keys {missing} in metric dictionary")
        return cls(**metric_dict)


class KeyValue(Frozen):
    """A key and its value: what ``Param`` and ``RunTag`` are (distinct classes, as MLflow's)."""

    __slots__ = ("key", "value")
    key: str
    value: str

    def __init__(self, key: str, value: str) -> None:
        _set(self, "key", key)
        _set(self, "value", value)


class Param(KeyValue):
    """A param, as ``Client.log_batch`` takes it (``mlflow.entities.Param``); the value is logged as ``str(value)``."""

    __slots__ = ()


class RunTag(KeyValue):
    """A run tag, as ``Client.log_batch`` takes it (``mlflow.entities.RunTag``); the value is logged as ``str(value)``."""

    __slots__ = ()


class FileInfo(Frozen):
    """An artifact file or folder, as ``list_artifacts`` returns it (``mlflow.entities.FileInfo``).

    ``path`` is relative to the run's artifact root; ``file_size`` is in bytes, None for a folder.
    """

    __slots__ = ("path", "is_dir", "file_size")
    path: str
    is_dir: bool
    file_size: int | None

    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        _set(self, "path", path)
        _set(self, "is_dir", is_dir)
        _set(self, "file_size", file_size)


class PagedList(list[T]):
    """One page of a search, as MLflow's ``PagedList``: a list, and the ``token`` that asks for the
    next page (None on the last one)."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token

    def to_list(self) -> list[T]:
        return list(self)
