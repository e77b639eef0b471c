"""What ``Client.log_batch`` does with the links an MLflow 3 ``Metric`` may carry.

``mlflow.entities.Metric`` (and trackd's) has ``run_id``, ``model_id``, ``dataset_name`` and
``dataset_digest``. MLflow's log_batch logs each metric to its ``run_id`` argument whatever the
Metric's ``run_id`` says (a history read from one run logs into another as it is), and so does
trackd's. The other three link the point to a logged model or a dataset: MLflow's FileStore writes
the dataset's name and digest into the line and the point into the model's metrics; trackd logs
neither, so a linked metric is refused at the call, as ``log_metric(..., dataset_name=...)`` is (a
TypeError), rather than logged without its link.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import InvalidArgument

M = TypeVar("M")

_LINKS = ("model_id", "dataset_name", "dataset_digest")


def require_unlinked(metric: M) -> M:
    """``metric`` itself, if it names no model and no dataset; InvalidArgument naming the link otherwise."""
    for name in _LINKS:
        value: Any = getattr(metric, name, None)
        if value is not None:
            raise InvalidArgument(
                f"Metric {getattr(metric, 'key', None)!r} has {name}={value!r}: trackd logs no link to a logged "
                f"model or a dataset; expected {', '.join(_LINKS)} None (log it with MLflow itself on the same ./mlruns)."
            )
    return metric
