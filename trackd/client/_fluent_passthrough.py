"""The fluent functions that hand the active run (or a given one) to its client as they are:
params and tags, artifacts, flush, reads (last_active_run included) and create_experiment. The
active-run bookkeeping they rely on, and the metric calls (the hot path, which reads it inline), are
in _fluent."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _fluent
from ._fluent import ActiveRun, _active_run_id, _here, _thread_runs, active_run, get_client

if TYPE_CHECKING:
    from ..store import Experiment, Metric, Run
    from ._operations import RunOperations
    from ._outbox import FlushReport


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Log a param to the active run; params cannot change once logged."""
    client = get_client()
    return client.log_param(_active_run_id(), key, value, synchronous)


def log_params(
    params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None,
) -> RunOperations | None:
    """Log several params, checking all of them before any is buffered."""
    client = get_client()
    from ..store import mapping_items  # loaded with the client

    pairs = [_KeyValue(k, v) for k, v in mapping_items(params, "params")]
    return client.log_batch(run_id or _active_run_id(), params=pairs, synchronous=synchronous)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> RunOperations | None:
    """Set a tag on the active run."""
    return get_client().set_tag(_active_run_id(), key, value, synchronous)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> RunOperations | None:
    """Set several tags on the active run."""
    client = get_client()
    from ..store import mapping_items  # loaded with the client

    pairs = [_KeyValue(k, v) for k, v in mapping_items(tags, "tags")]
    return client.log_batch(_active_run_id(), tags=pairs, synchronous=synchronous)


def delete_tag(key: str) -> None:
    """Delete a tag of the active run."""
    get_client().delete_tag(_active_run_id(), key)


class _KeyValue:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Any) -> None:
        self.key, self.value = key, value


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None = None, run_id: str | None = None) -> None:
    """Copy a file or directory into the active run's artifacts."""
    get_client().log_artifact(run_id or _active_run_id(), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None = None, run_id: str | None = None) -> None:
    """Copy a directory's files into the active run's artifacts."""
    get_client().log_artifacts(run_id or _active_run_id(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str | os.PathLike[str], run_id: str | None = None) -> None:
    """Save text as an artifact file of the active run."""
    get_client().log_text(run_id or _active_run_id(), text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str | os.PathLike[str], run_id: str | None = None) -> None:
    """Save a dict as a JSON or YAML artifact file of the active run."""
    get_client().log_dict(run_id or _active_run_id(), dictionary, artifact_file)


def flush(timeout: float | None = None) -> FlushReport:
    """Wait until everything this process logged is in the store (see Client.flush)."""
    return get_client().flush(timeout)


def flush_async_logging() -> None:
    """Wait until everything this process logged is in the store: MLflow's name for flush() of
    what ``synchronous=False`` logged (every trackd call is asynchronous; see flush)."""
    get_client().flush()


def is_tracking_uri_set() -> bool:
    """Whether a store was chosen (``set_tracking_uri``, or TRACKD_TRACKING_URI or MLFLOW_TRACKING_URI
    set), as MLflow's: an integration (transformers' MLflowCallback) asks before setting its own."""
    return bool(_fluent._tracking_uri or os.environ.get("TRACKD_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI"))


def get_run(run_id: str) -> Run:
    """A run as stored, after flushing."""
    return get_client().get_run(run_id)


def get_metric_history(run_id: str, key: str) -> list[Metric]:
    """Every logged value of a metric, after flushing."""
    return get_client().get_metric_history(run_id, key)


def get_experiment_by_name(name: str) -> Experiment | None:
    """The experiment with this name, active or deleted (as MLflow's), or None."""
    return get_client().get_experiment_by_name(name)


def get_experiment(experiment_id: str) -> Experiment:
    """The experiment with this id."""
    return get_client().get_experiment(experiment_id)


def create_experiment(name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
    """Create an experiment and return its id."""
    return get_client().create_experiment(name, artifact_location, tags)


def last_active_run() -> ActiveRun | Run | None:
    """The active run, else the run this process ended last (the outermost, of nested runs).

    As MLflow's: ``active_run()`` while a run is active, otherwise ``get_run()`` of that run
    (after flushing), so a run that has ended reads ``info.status == "FINISHED"``. It is read
    from the run's own store, even after set_tracking_uri() moved on.
    """
    active = active_run()
    if active is not None:
        return active
    _thread_runs()
    last: ActiveRun | None = _here.last
    if last is None:
        return None
    return last.open_client().get_run(last.run_id)
