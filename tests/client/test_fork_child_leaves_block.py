"""A forked child that leaves its parent's `with start_run()` block ends nothing: the parent ends the run.

A child forked inside the block (``os.fork()`` by hand, as a user's worker does) that finished with
``sys.exit(0)``, or raised, left the block as any code does, and the block's exit ended the
parent's run FAILED; the store keeps a failure against a later FINISHED, so the parent's clean end
could not undo it and the run read FAILED, with nothing said. MLflow's store shows FINISHED there
(the parent's end is the last). A real daemon, real forked children, MLflow reading the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python
from mlflow.tracking import MlflowClient

JOB = """
import os, sys, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    trackd.log_param("p", "1")
    pid = os.fork()
    if pid == 0:
        try:
            with trackd.start_run(nested=True):  # a run of the child's own ends as its block ends
                trackd.log_metric("child_nested", 1.0)
            trackd.log_metric("child", 1.0)
            if sys.argv[2] == "exit":
                sys.exit(0)
            raise ValueError("a child's failure")
        finally:
            trackd.flush()
    os.waitpid(pid, 0)
    trackd.log_metric("parent", 2.0)
print(run.info.run_id)
"""


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_forked_child_leaving_the_block_does_not_end_its_parents_run(
    daemon: DaemonProcess, store: Path, how: str
) -> None:
    result = run_python(JOB.replace("sys.argv[1]", repr(str(store))).replace("sys.argv[2]", repr(how)), child_env(daemon.paths.socket))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    client = MlflowClient(tracking_uri=str(store))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", (run.info.status, run.data.tags, result.stderr)
    assert run.data.metrics == {"child": 1.0, "parent": 2.0} and run.data.params == {"p": "1"}
    # The child's own nested run ended with its block, FINISHED.
    nested = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert [(r.info.status, r.data.metrics) for r in nested] == [("FINISHED", {"child_nested": 1.0})]


INHERITED_NESTED = """
import os, sys, trackd
trackd.set_tracking_uri(STORE)
with trackd.start_run() as run:
    nested = trackd.start_run(nested=True)  # the parent's trial, started without a `with`
    pid = os.fork()
    if pid == 0:
        trackd.flush()
        sys.exit(0)  # leaves both blocks' runs to the parent
    os.waitpid(pid, 0)
    trackd.log_metric("parent", 2.0)
    trackd.end_run()  # the trial
print(run.info.run_id, nested.info.run_id)
"""


def test_a_forked_child_leaving_the_block_does_not_end_the_parents_nested_run_either(daemon: DaemonProcess, store: Path) -> None:
    result = run_python(INHERITED_NESTED.replace("STORE", repr(str(store))), child_env(daemon.paths.socket))
    assert result.returncode == 0, result.stderr
    outer, nested = result.stdout.split()
    client = MlflowClient(tracking_uri=str(store))
    assert [client.get_run(run_id).info.status for run_id in (outer, nested)] == ["FINISHED", "FINISHED"], result.stderr
