"""`trackd daemon status` counts the runs the daemon made, ended (by status) and resumed.

A benchmark suite of hundreds of short processes, each making a run, saw clients, events and
errors in status, not how many runs were made and how they ended. Each test runs real processes
against a real daemon: processes that make and end runs, one that attaches to another's run (a
create that makes nothing), one SIGKILLed (its run failed by the daemon, through its will), ends
of status FAILED and KILLED, and a finished run resumed and ended again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, child_env, wait_for
from mlflow.tracking import MlflowClient

from trackd.cli import main as cli_main

# A child logging to the test's store: it starts a run (``start``), logs a point, flushes, prints
# the run id, then runs ``then``.
CHILD = """
import os, signal, sys, trackd
trackd.set_tracking_uri({store!r})
run = trackd.start_run({start})
trackd.log_metric("loss", 0.5, step=0)
trackd.flush()
print(run.info.run_id, flush=True)
{then}
"""


def start_child(store: Path, socket_path: Path, *, start: str = "", then: str = "trackd.end_run()") -> tuple[subprocess.Popen[str], str]:
    """A child running CHILD; returns it and its run id (printed once its point is delivered)."""
    code = CHILD.format(store=str(store), start=start, then=then)
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(socket_path, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert run_id, child.communicate(timeout=30)[1]
    return child, run_id


def run_child(store: Path, socket_path: Path, **code: str) -> str:
    """Run a child to its exit (0, or SIGKILL when it kills itself); its run id."""
    child, run_id = start_child(store, socket_path, **code)
    _, err = child.communicate(timeout=60)
    assert child.returncode in (0, -signal.SIGKILL), err
    return run_id


def statuses(store: Path, run_ids: list[str]) -> list[str]:
    client = MlflowClient(tracking_uri=f"file:{store}")
    return [client.get_run(run_id).info.status for run_id in run_ids]


def test_status_counts_the_runs_made_ended_and_resumed_not_those_attached_to(
    daemon: DaemonProcess, store: Path, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = [run_child(store, socket_path) for _ in range(3)]
    # A process attaches to a live run (start_run(run_id=)): its create makes nothing.
    owner, shared = start_child(store, socket_path, then="sys.stdin.readline()\ntrackd.end_run()")
    run_child(store, socket_path, start=f"run_id={shared!r}")
    assert owner.communicate("\n", timeout=60)[0] == "" and owner.returncode == 0
    failed = run_child(store, socket_path, then='trackd.end_run("FAILED")')
    killed = run_child(store, socket_path, then='trackd.end_run("KILLED")')
    sigkilled = run_child(store, socket_path, then="os.kill(os.getpid(), signal.SIGKILL)")
    # A finished run resumed (RUNNING again) and ended again: resumed once, ended twice.
    run_child(store, socket_path, start=f"run_id={finished[0]!r}")
    # The will fails the SIGKILLed process's run once its events are written.
    wait_for(
        lambda: (s := daemon.status())["clients_connected"] == 0 and s["wills_pending"] == 0,
        timeout=30, message="no client connected and no will pending",
    )
    assert statuses(store, [*finished, shared, failed, killed, sigkilled]) == [*["FINISHED"] * 4, "FAILED", "KILLED", "FAILED"]

    status = daemon.status()
    assert (status["runs_created"], status["runs_resumed"]) == (7, 1)
    assert status["runs_ended"] == {"FINISHED": 5, "FAILED": 2, "KILLED": 1}
    assert status["runs_failed_for_exited_clients"] == 1
    assert cli_main(["daemon", "status", "--socket", str(socket_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  runs          7 created, 1 resumed; 8 ended: 5 FINISHED, 2 FAILED, 1 KILLED; 0 running in connected processes" in lines
    assert cli_main(["daemon", "status", "--socket", str(socket_path), "--json"]) == 0
    reply: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (reply["runs_created"], reply["runs_resumed"], reply["runs_ended"]) == (7, 1, {"FINISHED": 5, "FAILED": 2, "KILLED": 1})


def test_ranks_creating_one_run_count_it_once(daemon: DaemonProcess, store: Path, socket_path: Path) -> None:
    # Every rank of a distributed job sends the run's create; the first makes it.
    env = {"MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef", "TRACKD_AUTOSTART": "0"}
    code = f"import trackd\ntrackd.set_tracking_uri({str(store)!r})\ntrackd.start_run()\ntrackd.log_metric('loss', 1.0)\n"
    ranks = [
        subprocess.Popen([sys.executable, "-c", code], env=child_env(socket_path, **env, RANK=str(rank)), stderr=subprocess.PIPE, text=True)
        for rank in (1, 2, 0)
    ]
    for rank in ranks:
        _, err = rank.communicate(timeout=60)
        assert rank.returncode == 0, err
    wait_for(lambda: daemon.status()["clients_connected"] == 0, timeout=30, message="no client connected")
    assert statuses(store, [env["MLFLOW_RUN_ID"]]) == ["FINISHED"]
    status = daemon.status()
    assert (status["runs_created"], status["runs_resumed"], status["runs_ended"]) == (1, 0, {"FINISHED": 1, "FAILED": 0, "KILLED": 0})
