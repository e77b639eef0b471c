"""A worker that attaches to its parent's run by id never ends it, even before the run is written.

A ``spawn`` worker that called ``start_run(run_id=...)`` (as the README tells it to) before its
parent's creation of the run had reached the store created the run itself and took itself for
its owner: it ended the run FINISHED when its block ended, while the parent still trained, and a
SIGKILL of the parent then left it FINISHED with no ``trackd.failure_reason``. Each test holds the
parent's creation back (connected by set_experiment, then TRACKD_FLUSH_INTERVAL of a minute:
nothing more is sent before a flush), runs the processes for real, and reads the store with MLflow.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, wait_for

FAILURE_REASON_TAG = "trackd.failure_reason"

# argv: store, start method, then "kill" to SIGKILL itself once the test lets it go on, or "end".
PARENT = """
import multiprocessing, os, signal, sys, trackd

def work(run_id):
    with trackd.start_run(run_id=run_id):
        trackd.log_metric("worker", 1.0)

if __name__ == "__main__":
    store, method, ending = sys.argv[1:4]
    trackd.set_tracking_uri(store)
    trackd.set_experiment("attach")  # connected now: the run's creation waits for the next send, a minute away
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # The server starts now, before the run: its children get its environment, not ours later.
        server_start = context.Process(target=print, args=("forkserver started",))
        server_start.start()
        server_start.join()
    run = trackd.start_run(run_name="parent")
    worker = context.Process(target=work, args=(run.info.run_id,))
    worker.start()
    worker.join()
    print(run.info.run_id, worker.exitcode, flush=True)
    sys.stdin.readline()  # the test reads the store meanwhile
    trackd.log_metric("parent", 2.0)
    if ending == "kill":
        trackd.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    trackd.end_run()
"""

# Variables a parent of the test suite may have set, which would change whom the run belongs to.
OWNERSHIP_VARIABLES = ("RANK", "MLFLOW_RUN_ID", "TRACKD_OWNED_RUNS")


def parent_env(socket_path: Path, **extra: str) -> dict[str, str]:
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_FLUSH_INTERVAL="60")
    for name in OWNERSHIP_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env


def start_parent(tmp_path: Path, store: Path, method: str, ending: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """The parent, once its worker has logged and left; and the run's id."""
    script = tmp_path / "parent.py"  # a file, not -c: spawn children import the parent's main module
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(store), method, ending], env=env, cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    while line.startswith("forkserver"):
        line = parent.stdout.readline()
    assert line, parent.communicate(timeout=30)[1]
    run_id, worker_exit = line.split()
    assert worker_exit == "0", parent.communicate(timeout=30)[1]
    return parent, run_id


def let_go(parent: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = parent.communicate("\n", timeout=60)
    return parent.returncode, err


def mlflow_run(store: Path, run_id: str) -> Any:
    return MlflowClient(tracking_uri=f"file:{store}").get_run(run_id)


@pytest.mark.parametrize(
    ("method", "rank"),
    [("spawn", None), ("forkserver", None), ("fork", None), ("spawn", "0")],
    ids=["spawn", "forkserver-started-before-the-run", "fork", "spawn-under-RANK-0"],
)
def test_a_worker_attached_by_id_before_the_parents_run_was_written_leaves_it_running_for_the_parent(
    daemon: DaemonProcess, store: Path, socket_path: Path, tmp_path: Path, method: str, rank: str | None
) -> None:
    # The worker's block ended the run FINISHED while the parent still trained (RANK=0, which a
    # rank's workers inherit, made the worker an owner the same way).
    env = parent_env(socket_path, **({"RANK": rank} if rank is not None else {}))
    parent, run_id = start_parent(tmp_path, store, method, "end", env)
    run = mlflow_run(store, run_id)  # written by the worker: the parent has sent nothing yet
    assert (run.info.status, run.info.end_time, run.data.metrics) == ("RUNNING", None, {"worker": 1.0})
    code, err = let_go(parent)
    assert code == 0, err
    assert "no run has that id" not in err  # the worker's run id is its parent's, not a typo
    run = mlflow_run(store, run_id)
    assert (run.info.status, run.data.metrics) == ("FINISHED", {"worker": 1.0, "parent": 2.0})


def test_a_parent_sigkilled_after_its_spawn_worker_attached_leaves_the_run_failed_with_the_reason(
    daemon: DaemonProcess, store: Path, socket_path: Path, tmp_path: Path
) -> None:
    # The worker had ended the run FINISHED, and the killed parent's run stayed FINISHED.
    parent, run_id = start_parent(tmp_path, store, "spawn", "kill", parent_env(socket_path))
    code, err = let_go(parent)
    assert code == -signal.SIGKILL, err
    wait_for(lambda: mlflow_run(store, run_id).info.status == "FAILED", timeout=20, message=f"run {run_id} FAILED")
    run = mlflow_run(store, run_id)
    assert f"process {parent.pid} " in run.data.tags[FAILURE_REASON_TAG]
    assert run.data.metrics == {"worker": 1.0, "parent": 2.0}


# A launcher that starts the run with trackd, then its ranks (torchrun's RANK) by id.
LAUNCHER = """
import os, subprocess, sys, trackd
trackd.set_tracking_uri(sys.argv[1])
trackd.set_experiment("attach")  # connected now: the run's creation waits for the next send, a minute away
RANK_CODE = "import os, sys, trackd\\nwith trackd.start_run(run_id=sys.argv[1]):\\n    trackd.log_metric('rank' + os.environ['RANK'], 1.0)\\n"
with trackd.start_run(run_name="launcher") as run:
    for rank in ("1", "0"):
        subprocess.run([sys.executable, "-c", RANK_CODE, run.info.run_id], env={**os.environ, "RANK": rank}, check=True)
    print(run.info.run_id, flush=True)
    sys.stdin.readline()
"""


def test_a_launcher_that_started_the_run_ends_it_not_its_rank_0(
    daemon: DaemonProcess, store: Path, socket_path: Path, tmp_path: Path
) -> None:
    # Rank 1's creation reached the store first, and rank 0, owner of the shared run under RANK,
    # ended it FINISHED while the launcher went on.
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(store)], env=parent_env(socket_path), cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert launcher.stdout is not None
    run_id = launcher.stdout.readline().strip()
    assert run_id, launcher.communicate(timeout=30)[1]
    run = mlflow_run(store, run_id)
    assert (run.info.status, run.data.metrics) == ("RUNNING", {"rank0": 1.0, "rank1": 1.0})
    code, err = let_go(launcher)
    assert (code, err) == (0, "")
    run = mlflow_run(store, run_id)
    assert run.info.status == "FINISHED"
