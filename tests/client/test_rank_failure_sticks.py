"""A rank's failure stays when rank 0 starts the shared run after that rank failed it.

A launcher hands every rank one run id. Rank 1 raised in its `with start_run(run_id=...)` block
before rank 0 got there (rank 0 loading its data, rank 1 out of memory at its first step): rank 0
took the FAILED run for a restarted job's, set it RUNNING again and ended it FINISHED, the failure
erased without a word (a review: 6 of 10 launches with both starting at once). A run created after
rank 0's process started is its launch's, not an earlier attempt's: rank 0 logs to it and its end
keeps the failure. A restarted job still reopens the run its last attempt failed.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, quiet_result, run_child
from helpers import DaemonProcess, wait_for

pytestmark = pytest.mark.timeout(120)

RANK = """
import os, sys, time, trackd
if os.environ["RANK"] == "0":
    while not os.path.exists(sys.argv[1]):  # loading its data while rank 1 fails
        time.sleep(0.01)
with trackd.start_run(run_id=os.environ["RUN_ID"]):
    trackd.log_metric("loss", float(os.environ["RANK"]), step=int(os.environ["RANK"]))
    if os.environ["RANK"] == "1":
        raise RuntimeError("CUDA out of memory")
"""


def _rank(rank: int, run_id: str, go: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RANK, str(go)], env={**env, "RANK": str(rank), "RUN_ID": run_id},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_rank_0_arriving_after_rank_1_failed_the_run_keeps_it_failed(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    run_id, go = uuid.uuid4().hex, tmp_path / "go"
    env = fluent_env(daemon, store)
    rank0 = _rank(0, run_id, go, env)  # started first: the run is younger than this process
    rank1 = _rank(1, run_id, go, env)
    _, err1 = rank1.communicate(timeout=60)
    assert rank1.returncode == 1 and "CUDA out of memory" in err1, err1
    wait_for(lambda: mlflow_reader(store).get_run(run_id).info.status == "FAILED", 30, message="rank 1's FAILED")
    go.touch()
    _, err0 = rank0.communicate(timeout=60)
    assert rank0.returncode == 0 and err0 == "", err0
    run = mlflow_reader(store).get_run(run_id)
    assert run.info.status == "FAILED"  # before: FINISHED, by rank 0
    steps = sorted(m.step for m in mlflow_reader(store).get_metric_history(run_id, "loss"))
    assert steps == [0, 1]  # rank 0 logged to it all the same


def test_a_restarted_job_still_reopens_the_run_its_last_attempt_failed(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    run_id, go = uuid.uuid4().hex, tmp_path / "go"
    env = fluent_env(daemon, store)
    first = _rank(1, run_id, go, env)  # the last attempt: it failed the run
    first.communicate(timeout=60)
    wait_for(lambda: mlflow_reader(store).get_run(run_id).info.status == "FAILED", 30, message="the FAILED attempt")
    go.touch()
    again = _rank(0, run_id, go, env)  # requeued: started after the run was
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0 and err == "", err
    assert mlflow_reader(store).get_run(run_id).info.status == "FINISHED"


SAME_PROCESS = """
import json, trackd
try:
    with trackd.start_run() as run:
        trackd.log_metric("x", 1.0)
        raise RuntimeError("first try")
except RuntimeError:
    pass
with trackd.start_run(run_id=run.info.run_id):  # tried again, as MLflow's resume allows
    during = trackd.get_run(run.info.run_id).info.status
    trackd.log_metric("x", 2.0, step=1)
print(json.dumps({"run": run.info.run_id, "during": during}))
"""


@pytest.mark.parametrize("rank", [None, "0"])
def test_a_process_reopens_the_run_it_failed_itself(daemon: DaemonProcess, store: Path, rank: str | None) -> None:
    # Review of 8341c30: without RANK (a notebook, a retry loop) a run this process created and
    # failed is younger than the process, and stayed FAILED through its resumed, clean end.
    env = fluent_env(daemon, store, **({"RANK": rank} if rank is not None else {}))
    result = quiet_result(run_child(SAME_PROCESS, env))
    assert result["during"] == "RUNNING"
    assert mlflow_reader(store).get_run(str(result["run"])).info.status == "FINISHED"


def test_without_rank_a_process_reopens_a_run_another_failed_after_it_started(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # Without RANK nothing tells a sibling from an earlier script (a driver retrying the run of a
    # subprocess it started): a run found FAILED is reopened, as MLflow's resume does, even one
    # created after this process started.
    run_id, go = uuid.uuid4().hex, tmp_path / "go"
    env = fluent_env(daemon, store)
    waiting = subprocess.Popen(
        [sys.executable, "-c", NO_RANK, str(go)], env={**env, "RUN_ID": run_id},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    failing = _rank(1, run_id, go, env)
    failing.communicate(timeout=60)
    wait_for(lambda: mlflow_reader(store).get_run(run_id).info.status == "FAILED", 30, message="the FAILED run")
    go.touch()
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and err == "", err
    assert mlflow_reader(store).get_run(run_id).info.status == "FINISHED"


NO_RANK = """
import os, sys, time, trackd
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
with trackd.start_run(run_id=os.environ["RUN_ID"]):
    trackd.log_metric("loss", 2.0, step=2)
"""
