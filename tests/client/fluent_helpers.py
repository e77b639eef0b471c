"""Fluent-API scenarios in fresh interpreters, shared by the test_fluent_*.py files.

The fluent functions keep module state (the active run stack, the client), and the behaviour under
test is about process exit, exceptions, environment variables and fork, so each scenario runs in
a fresh interpreter and is checked from outside: exit code, stderr, and the store read by MLflow.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from helpers import DaemonProcess, child_env, run_python
from mlflow import MlflowClient
from mlflow.entities import Run as MlflowRun

TRACKING_VARIABLES = ("TRACKD_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "RANK", "TRACKD_OWNED_RUNS")


def fluent_env(daemon: DaemonProcess, store: Path | None, **extra: str) -> dict[str, str]:
    """A child's environment: the test's daemon, no autostart, and only the tracking variables given."""
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")
    for name in TRACKING_VARIABLES:
        env.pop(name, None)
    if store is not None:
        env["TRACKD_TRACKING_URI"] = str(store)
    env.update(extra)
    return env


def run_child(code: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_python(textwrap.dedent(code), env, cwd=cwd, timeout=60.0)


def quiet_result(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The JSON the child printed last; the child must have exited 0 and said nothing on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
    return dict(json.loads(last))


def mlflow_reader(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=str(store))


def only_run(store: Path, experiment_id: str = "0") -> MlflowRun:
    [run] = mlflow_reader(store).search_runs([experiment_id])
    return run
