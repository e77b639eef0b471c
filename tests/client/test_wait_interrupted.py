"""A signal handler's exception (a timeout's SIGALRM, Ctrl-C) that interrupts one of trackd's waits
on its sender's lock reaches the caller as it is, and trackd goes on working after it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, quiet_result, run_child
from helpers import DaemonProcess

# Sends the signal at the instant Condition.wait, called (maybe through a helper) by the trackd
# function named WAITER, has let go of the sender's lock (its _release_save has returned) and not
# yet taken it back: where CPython runs a handler that comes while such a wait ends.
INTERRUPT_IN_THE_WAIT = """
import json, os, signal, sys, trackd

def time_is_up(signum, frame):
    raise TimeoutError("the cell ran out of time")

signal.signal(signal.SIGALRM, time_is_up)
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background child may inherit it ignored
fired = []

def interrupt(frame, event, arg):
    if event != "c_return" or getattr(arg, "__name__", "") != "_release_save":
        return
    callers, caller = [], frame.f_back
    while caller is not None and len(callers) < 3:
        callers.append(caller.f_code.co_name)
        caller = caller.f_back
    if WAITER in callers:
        sys.setprofile(None)
        fired.append(True)
        os.kill(os.getpid(), SIGNAL)

def interrupted(call):
    sys.setprofile(interrupt)
    try:
        call()
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        sys.setprofile(None)
"""

TIMED_OUT_IN_END_RUN = INTERRUPT_IN_THE_WAIT + """
WAITER, SIGNAL = "_wait", signal.SIGALRM
trackd.start_run(run_name="timed-out")
for step in range(1000):
    trackd.log_metric("m", float(step), step=step)
raised = interrupted(trackd.end_run)
with trackd.start_run(run_name="next"):
    trackd.log_metric("m", 1.0)
trackd.flush()
print(json.dumps({"fired": bool(fired), "raised": raised, "active": trackd.active_run() is not None}))
"""


@pytest.mark.timeout(60)
def test_a_timeout_raised_while_end_run_waits_reaches_the_caller_and_trackd_goes_on(daemon: DaemonProcess, store: Path) -> None:
    # Condition.wait left the sender's lock released, and leaving `with self._cond` in Sender._wait
    # raised "RuntimeError: cannot release un-acquired lock" in place of the TimeoutError (1 run in
    # 300 of a loop with random alarms).
    result = quiet_result(run_child(TIMED_OUT_IN_END_RUN, fluent_env(daemon, store)))
    assert result == {"fired": True, "raised": "TimeoutError: the cell ran out of time", "active": False}
    runs = {run.info.run_name: run for run in mlflow_reader(store).search_runs(["0"])}
    # The run had been taken off the stack and its end queued before the wait: it ended as end_run ended it.
    assert runs["timed-out"].info.status == "FINISHED"
    assert len(mlflow_reader(store).get_metric_history(runs["timed-out"].info.run_id, "m")) == 1000
    assert runs["next"].info.status == "FINISHED" and runs["next"].data.metrics == {"m": 1.0}


CTRL_C_WAITING_FOR_ROOM = INTERRUPT_IN_THE_WAIT + """
WAITER, SIGNAL = "_wait_for_room", signal.SIGINT
run = trackd.start_run(run_name="waiting")
trackd.log_metric("warm", 1.0)
trackd.flush(timeout=30)
print("started", flush=True)
sys.stdin.readline()  # the daemon is stopped now: the buffer fills and a logging call waits for room

def log_until_full():
    for step in range(1000):
        trackd.log_metric("k", float(step), step=step)

raised = interrupted(log_until_full)
print(json.dumps({"fired": bool(fired), "raised": raised}), flush=True)
sys.stdin.readline()  # the daemon goes on
trackd.log_metric("after", 1.0)
trackd.end_run()
"""


@pytest.mark.timeout(120)
def test_a_ctrl_c_as_a_logging_call_waits_for_room_reaches_the_caller_and_trackd_goes_on(
    daemon: DaemonProcess, store: Path
) -> None:
    # The same lock, taken by a logging call waiting for room under TRACKD_ON_FULL=block: the
    # Ctrl-C came out as "RuntimeError: cannot release un-acquired lock".
    env = fluent_env(daemon, store, TRACKD_MAX_BUFFERED="10", TRACKD_ON_FULL="block")
    with subprocess.Popen(
        [sys.executable, "-c", CTRL_C_WAITING_FOR_ROOM], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as child:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        try:
            assert child.stdout.readline().strip() == "started"
            daemon.signal(signal.SIGSTOP)
            child.stdin.write("\n")
            child.stdin.flush()
            result = json.loads(child.stdout.readline() or "null")
            daemon.signal(signal.SIGCONT)
            child.stdin.write("\n")
            child.stdin.close()
            assert child.wait(timeout=60) == 0, child.stderr.read()
        finally:
            daemon.signal(signal.SIGCONT)
            if child.poll() is None:
                child.kill()
    assert result == {"fired": True, "raised": "KeyboardInterrupt: "}
    [run] = mlflow_reader(store).search_runs(["0"])
    assert run.info.status == "FINISHED" and run.data.metrics["after"] == 1.0
