"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

# MLflow 3.13+ refuses to open a file store without this opt-out; no telemetry from tests.
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
