"""MLflow's ``mlflow.entities``, for code ported with ``import trackd as mlflow``.

``mlflow.entities.Param("lr", 0.1)`` and ``RunTag`` build what ``Client.log_batch`` takes, beside
``Metric``; the rest are the classes trackd's reads return (``get_run``, ``search_runs``,
``get_metric_history``, ``list_artifacts``...). They are the store's own classes, under MLflow's names
(``trackd.Metric`` is ``trackd.entities.Metric``). Loaded on first access, not by ``import trackd``.
"""

from __future__ import annotations

from .store import Experiment, FileInfo, Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag, ViewType

__all__ = ["Experiment", "FileInfo", "Metric", "Param", "Run", "RunData", "RunInfo", "RunStatus", "RunTag", "ViewType"]
