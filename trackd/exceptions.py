"""MLflow's ``mlflow.exceptions``, for code ported with ``import trackd as mlflow``.

``MlflowException`` is trackd's base error (``trackd.errors.TrackdError``), so
``except mlflow.exceptions.MlflowException`` catches what trackd raises. The tree is in ``trackd.errors``.
"""

from __future__ import annotations

from .errors import MlflowException

__all__ = ["MlflowException"]
