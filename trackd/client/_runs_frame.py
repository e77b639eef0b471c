"""Runs as the pandas DataFrame of MLflow's fluent ``search_runs`` (its default ``output_format``).

A benchmark suite's results are read back with ``mlflow.search_runs()`` into a DataFrame; through
``import trackd as mlflow`` that call raised, and the advice was to import mlflow (seconds) to read
the same ./mlruns. pandas is imported here, on the first such call only: ``import trackd`` stays
free of it, and a process without pandas gets MLflow's ModuleNotFoundError with the way out.

The frame is MLflow's (``mlflow.tracking.fluent.search_runs``): ``run_id``, ``experiment_id``,
``status``, ``artifact_uri``, ``start_time`` and ``end_time`` (UTC datetimes, NaT for a run not
ended), then ``metrics.<key>`` (latest values, NaN where a run lacks the key), ``params.<key>``
and ``tags.<key>`` (None where it lacks it), one row a run in the search's order. MLflow orders
the columns of each prefix by first appearance, a run's new keys in set order (which varies with
the process's hash seed); here a run's new keys come sorted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Run


def runs_frame(runs: Sequence[Run]) -> Any:
    """``runs`` as MLflow's search_runs DataFrame (see the module's docstring)."""
    try:
        import pandas as pd
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "trackd.search_runs() returns a pandas DataFrame by default, as MLflow's does, and pandas is not "
            "installed: install it (pip install pandas), or pass output_format='list' for a list of runs.",
            name="pandas",
        ) from exc
    info: dict[str, list[Any]] = {
        "run_id": [], "experiment_id": [], "status": [], "artifact_uri": [], "start_time": [], "end_time": [],
    }
    metrics: dict[str, list[Any]] = {}
    params: dict[str, list[Any]] = {}
    tags: dict[str, list[Any]] = {}
    for row, run in enumerate(runs):
        info["run_id"].append(run.info.run_id)
        info["experiment_id"].append(run.info.experiment_id)
        info["status"].append(run.info.status)
        info["artifact_uri"].append(run.info.artifact_uri)
        info["start_time"].append(pd.to_datetime(run.info.start_time, unit="ms", utc=True))
        info["end_time"].append(pd.to_datetime(run.info.end_time, unit="ms", utc=True))
        _add(metrics, run.data.metrics, row, float("nan"))
        _add(params, run.data.params, row, None)
        _add(tags, run.data.tags, row, None)
    data: dict[str, list[Any]] = dict(info)
    for prefix, columns in (("metrics.", metrics), ("params.", params), ("tags.", tags)):
        data.update((prefix + key, values) for key, values in columns.items())
    return pd.DataFrame(data)


def _add(columns: dict[str, list[Any]], values: Mapping[str, Any], row: int, null: Any) -> None:
    """Append row ``row``'s ``values`` to ``columns``: ``null`` where it lacks a column, and a new
    column for each key it brings, ``null`` in the rows before."""
    for key, column in columns.items():
        column.append(values.get(key, null))
    for key in sorted(values.keys() - columns.keys()):
        columns[key] = [null] * row + [values[key]]
