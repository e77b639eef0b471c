"""A run the daemon failed because its process was killed, resumed by a new process, says nothing of that failure.

A preempted job (SIGKILL, the OOM killer) has its run failed by the daemon with ``trackd.failure_reason``.
Its requeued process resumes the run (``start_run(run_id=...)``) and ends it FINISHED: the tag used to
stay, so a FINISHED run said it had failed. As MLflow's resume, which only sets RUNNING, the run's record
now says what it is now. Each test kills a real process and reads the run back with MLflow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, quiet_result, run_child
from helpers import DaemonProcess, wait_for
from mlflow import MlflowClient
from mlflow.entities import Run as MlflowRun

FAILURE_REASON_TAG = "trackd.failure_reason"

KILLED_JOB = """
import os, signal, trackd
run = trackd.start_run()
trackd.log_metric("loss", 1.0, step=0)
trackd.flush()
print(run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

REQUEUED_JOB = """
import json, trackd
with trackd.start_run(run_id={run_id!r}) as run:
    trackd.log_metric("loss", 0.5, step=1)
    during = sorted(run.data.tags)
print(json.dumps({{"during": during}}))
"""


def mlflow_run(store: Path, run_id: str) -> MlflowRun:
    return MlflowClient(tracking_uri=str(store)).get_run(run_id)


def killed_run(daemon: DaemonProcess, store: Path) -> str:
    """The id of a run whose process was SIGKILLed, once the daemon has failed it with its reason."""
    child = subprocess.run([sys.executable, "-c", KILLED_JOB], env=fluent_env(daemon, store), capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stderr
    run_id = child.stdout.strip()
    wait_for(lambda: mlflow_run(store, run_id).info.status == "FAILED", timeout=20, message=f"run {run_id} FAILED")
    assert "exited without ending the run" in mlflow_run(store, run_id).data.tags[FAILURE_REASON_TAG]
    return run_id


def test_a_killed_run_resumed_and_finished_keeps_no_failure_reason(daemon: DaemonProcess, store: Path) -> None:
    # This used to leave FINISHED with trackd.failure_reason "... exited without ending the run".
    run_id = killed_run(daemon, store)
    during = quiet_result(run_child(REQUEUED_JOB.format(run_id=run_id), fluent_env(daemon, store)))["during"]
    run = mlflow_run(store, run_id)
    assert run.info.status == "FINISHED"
    assert FAILURE_REASON_TAG not in run.data.tags
    assert isinstance(during, list) and FAILURE_REASON_TAG not in during  # nor did the resumed run's data say it, while it ran
    assert [m.value for m in MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "loss")] == [1.0, 0.5]


@pytest.mark.parametrize("how", ["rank-1", "attached"])
def test_a_process_that_does_not_reopen_a_killed_run_leaves_its_failure_reason(
    daemon: DaemonProcess, store: Path, how: str
) -> None:
    # Another rank than 0, or a worker whose parent owns the run, only attaches: the run stays FAILED, and says why.
    run_id = killed_run(daemon, store)
    extra = {"RANK": "1"} if how == "rank-1" else {"TRACKD_OWNED_RUNS": run_id}
    during = quiet_result(run_child(REQUEUED_JOB.format(run_id=run_id), fluent_env(daemon, store, **extra)))["during"]
    run = mlflow_run(store, run_id)
    assert run.info.status == "FAILED"
    assert FAILURE_REASON_TAG in run.data.tags and isinstance(during, list) and FAILURE_REASON_TAG in during
