"""A Ctrl-C (or another signal handler's exception) as a cell starts or ends its run, in a process
that lives on, as a notebook's kernel does: the run ends and none is left active for the next cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader
from helpers import DaemonProcess

# A notebook's cells: the first gets the signal named on the command line at the call (or return)
# of the trackd function named there; the kernel then waits (the test reads the store) and runs
# two more cells. SIGALRM's handler raises, as a cell timeout's (or pytest-timeout's) does.
CELLS = """
import json, os, signal, sys, trackd
function, event, signum = sys.argv[1], sys.argv[2], signal.Signals[sys.argv[3]]

def time_is_up(signum, frame):
    raise TimeoutError("the cell ran out of time")

signal.signal(signal.SIGALRM, time_is_up)

def interrupt(frame, event_, arg):
    if event_ == event and frame.f_code.co_name == function and "trackd" in frame.f_code.co_filename:
        sys.setprofile(None)
        os.kill(os.getpid(), signum)

sys.setprofile(interrupt)
raised = None
try:
    with trackd.start_run(run_name="cell-1"):
        trackd.log_metric("m", 1.0)
except BaseException as exc:
    raised = type(exc).__name__
sys.setprofile(None)
active = trackd.active_run()
trackd.flush()
print(json.dumps({"raised": raised, "active": active and active.info.run_name}), flush=True)
sys.stdin.readline()  # the kernel lives on: the test reads the store meanwhile
with trackd.start_run(run_name="cell-2"):
    trackd.log_metric("m", 2.0)
trackd.log_metric("loose", 3.0)
print(json.dumps({"loose": trackd.active_run().info.run_name}), flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("function", "event", "signal_name", "raised", "status"),
    [
        ("create_run", "return", "SIGINT", "KeyboardInterrupt", "KILLED"),
        ("advertise", "call", "SIGINT", "KeyboardInterrupt", "KILLED"),
        ("advertise", "call", "SIGALRM", "TimeoutError", "FAILED"),
        ("_end_run", "call", "SIGINT", "KeyboardInterrupt", "KILLED"),
        ("_end_run", "call", "SIGALRM", "TimeoutError", "FAILED"),
    ],
    ids=[
        "ctrl-c-as-the-creation-is-queued", "ctrl-c-as-the-run-is-on-the-stack", "timeout-as-the-run-is-on-the-stack",
        "ctrl-c-as-the-block-ends", "timeout-as-the-block-ends",
    ],
)
def test_a_signal_inside_start_run_or_the_blocks_end_ends_the_run_and_leaves_none_active(
    daemon: DaemonProcess, store: Path, function: str, event: str, signal_name: str, raised: str, status: str
) -> None:
    # start_run held the Ctrl-C until the run was on the stack and raised it there, out of
    # start_run: the block was never entered, the run stayed active, the next cell raised "Run
    # with UUID ... is already active", and a later log call with no run went to the interrupted
    # run, RUNNING for as long as the kernel lived. A signal as the block ended, before end_run
    # held the signals, left its run active the same way.
    with subprocess.Popen(
        [sys.executable, "-c", CELLS, function, event, signal_name], env=fluent_env(daemon, store),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        try:
            first = json.loads(child.stdout.readline() or "null")
            assert first == {"raised": raised, "active": None}
            # While the process lives: what the store says of the interrupted cell's run.
            [interrupted] = mlflow_reader(store).search_runs(["0"])
            assert (interrupted.info.run_name, interrupted.info.status) == ("cell-1", status)
            child.stdin.write("\n")
            child.stdin.flush()
            last = json.loads(child.stdout.readline() or "null")
            assert child.wait(timeout=30) == 0 and last is not None, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
    assert last["loose"] not in ("cell-1", "cell-2")  # a run of its own, not the interrupted one
    runs = {run.info.run_name: run for run in mlflow_reader(store).search_runs(["0"])}
    assert runs["cell-1"].info.status == status and "loose" not in runs["cell-1"].data.metrics
    assert runs["cell-2"].info.status == "FINISHED" and runs["cell-2"].data.metrics == {"m": 2.0}
