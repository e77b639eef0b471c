"""The fluent functions that hand the active run (or a given one) to its client as they are:
params and tags, artifacts (figures and images included), flush, reads (last_active_run,
get_artifact_uri and search_runs included) and create_experiment. The
active-run bookkeeping they rely on, and the metric calls (the hot path, which reads it inline), are
in _fluent."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InvalidArgument

from . import _fluent
from ._fluent import ActiveRun, _active_run_id, _here, _logging_run, _thread_runs, active_run, get_client

if TYPE_CHECKING:
    from ..store import Experiment, Metric, Run
    from ._operations import RunOperations
    from ._outbox import FlushReport
    from ..store import PagedList

T = TypeVar("T")
# MLflow's fluent search_runs: SEARCH_MAX_RESULTS_PANDAS results by default, read in pages of
# NUM_RUNS_PER_PAGE_PANDAS (trackd's Client.search_runs returns at most 50,000 a page).
SEARCH_MAX_RESULTS_PANDAS = 100_000
SEARCH_PAGE_SIZE = 10_000


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Log a param to the active run; params cannot change once logged."""
    client = get_client()
    return client.log_param(_active_run_id(), key, value, synchronous)


def log_params(
    params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None,
) -> RunOperations | None:
    """Log several params, checking all of them before any is buffered."""
    client = get_client()
    from ..store import Param, mapping_items  # loaded with the client

    pairs = [Param(k, v) for k, v in mapping_items(params, "params")]
    return client.log_batch(run_id or _active_run_id(), params=pairs, synchronous=synchronous)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> RunOperations | None:
    """Set a tag on the active run."""
    return get_client().set_tag(_active_run_id(), key, value, synchronous)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> RunOperations | None:
    """Set several tags on the active run."""
    client = get_client()
    from ..store import RunTag, mapping_items  # loaded with the client

    pairs = [RunTag(k, v) for k, v in mapping_items(tags, "tags")]
    return client.log_batch(_active_run_id(), tags=pairs, synchronous=synchronous)


def delete_tag(key: str) -> None:
    """Delete a tag of the active run."""
    get_client().delete_tag(_active_run_id(), key)


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


def log_figure(figure: Any, artifact_file: str | os.PathLike[str], *, save_kwargs: Mapping[str, Any] | None = None) -> None:
    """Save a matplotlib or plotly figure as an artifact file of the active run (see Client.log_figure)."""
    client = get_client()
    client.log_figure(_active_run_id(), figure, artifact_file, save_kwargs=save_kwargs)


def log_image(
    image: Any, artifact_file: str | os.PathLike[str] | None = None, key: str | None = None, step: int | None = None,
    timestamp: int | None = None, synchronous: bool | None = False,
) -> None:
    """Save an image as an artifact file of the active run, or with ``key`` as an image per step
    (see Client.log_image)."""
    client = get_client()
    client.log_image(_active_run_id(), image, artifact_file, key, step, timestamp, synchronous)


def log_table(data: Any, artifact_file: str | os.PathLike[str], run_id: str | None = None) -> None:
    """Not implemented: raises InvalidArgument saying what to use instead."""
    # MLflow's writes the table with pandas (DataFrame.to_json(orient="split")), appends it to the
    # run's file of that name, saves image cells under table_images/ and lists the file in the
    # mlflow.loggedArtifacts tag: pandas' JSON is not matched without pandas.
    raise InvalidArgument(
        f"trackd.log_table({artifact_file!r}) is not implemented (MLflow's writes the table with pandas). Log the "
        "columns with trackd.log_dict(data, 'table.json'), or call mlflow.log_table on the same ./mlruns."
    )


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The active run's artifact root URI, joined with ``artifact_path`` as MLflow's
    (``/.../<run_id>/artifacts/<artifact_path>`` for a store set as a plain path,
    ``file:///...`` for one set as a ``file:`` URI or by default); starts a run if none is active, as MLflow's.

    Known from the run's start: it never waits for the daemon.
    """
    root = _logging_run().info.artifact_uri  # starts one, or the run exit ended (a thread logging on)
    if artifact_path is None:
        return root
    from ..store._layout import append_to_uri_path

    return append_to_uri_path(root, artifact_path)


def search_runs(
    experiment_ids: list[str] | None = None, filter_string: str = "", run_view_type: int = 1,
    max_results: int = SEARCH_MAX_RESULTS_PANDAS, order_by: list[str] | None = None, output_format: str = "pandas",
    search_all_experiments: bool = False, experiment_names: list[str] | None = None,
) -> Any:
    """The runs of these experiments (default: the active one), newest first or in ``order_by``: as
    MLflow's pandas DataFrame (the default, which needs pandas: see _runs_frame), or as a list of
    runs with ``output_format="list"``. As Client.search_runs, with MLflow's search grammar
    (``filter_string``, ``order_by``)."""
    if output_format not in ("list", "pandas"):
        raise InvalidArgument(
            f"Unsupported output format: {output_format!r}. Supported string values are 'pandas' or 'list'."
        )
    runs = _search_runs(experiment_ids, filter_string, run_view_type, max_results, order_by, search_all_experiments, experiment_names)
    if output_format == "list":
        return runs
    from ._runs_frame import runs_frame

    return runs_frame(runs)


def _search_runs(
    experiment_ids: list[str] | None, filter_string: str, run_view_type: int, max_results: int,
    order_by: list[str] | None, search_all_experiments: bool, experiment_names: list[str] | None,
) -> list[Run]:
    """search_runs' runs, as a list."""
    if experiment_ids and experiment_names:
        raise InvalidArgument("Only experiment_ids or experiment_names can be used, but not both")
    client = get_client()
    if experiment_names:  # MLflow skips (and logs) a name with no experiment
        ids = [found.experiment_id for found in map(client.get_experiment_by_name, experiment_names) if found is not None]
    elif experiment_ids:
        # One id as a str is one experiment, as MLflow's client takes it: list("12") searched
        # experiments "1" and "2", and returned [] (or another experiment's runs) without a word.
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    elif search_all_experiments:
        ids = [experiment.experiment_id for experiment in _all_pages(client.search_experiments)]
    else:
        ids = [_fluent._current_experiment_id(client)]
    if not ids:
        return []
    return _all_pages(lambda **page: client.search_runs(ids, filter_string, run_view_type, order_by=order_by, **page), max_results)


def _all_pages(search: Callable[..., PagedList[T]], max_results: int | None = None) -> list[T]:
    """Every page of ``search``, up to ``max_results`` items, as MLflow's get_results_from_paginated_fn."""
    found: list[T] = []
    token = None
    while max_results is None or len(found) < max_results:
        wanted = SEARCH_PAGE_SIZE if max_results is None else min(SEARCH_PAGE_SIZE, max_results - len(found))
        page = search(max_results=wanted, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return found


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
