"""MLflow's ``mlflow.tracking``, for code ported with ``import trackd as mlflow``.

``mlflow.tracking.MlflowClient(...)`` (the older spelling of ``mlflow.MlflowClient``) is trackd's
``Client``, and the tracking-URI functions are trackd's own; the model registry's URI raises
AttributeError saying what to use instead. Loaded on first access (``trackd.tracking``), not by
``import trackd``.
"""

from __future__ import annotations

from ._lazy import lazy_attributes as _lazy_attributes
from .client import Client as MlflowClient
from .client import get_tracking_uri, is_tracking_uri_set, set_tracking_uri

__getattr__, __dir__ = _lazy_attributes(__name__, {}, hints="trackd._mlflow_gaps:TRACKING_HINTS")

__all__ = ["MlflowClient", "get_tracking_uri", "is_tracking_uri_set", "set_tracking_uri"]
