"""A daemon stopped before it answered the client that started it is started again.

`trackd daemon stop` landing on a daemon that a client had just started (it listened, and may have
served other clients already) made that client give up: the daemon "exited with code 0 before it
answered", read as a bad flag, "none could be started", and a short job spooled all it logged for a
`trackd sync` (2 of 96 jobs when 12 stops met 8-job rounds). The window is made wide here: the
daemon SIGSTOPs the client that started it as it starts, so the client cannot see it answer before
the test has stopped it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths
from trackd.client._launcher import MAX_ENDED_STARTS, daemon_answers

from helpers import SHORT_JOB, Child, inherited_env, wait_for

# In the daemon's interpreter, before it listens: note "started <pid>", and SIGSTOP its parent (the
# client whose sender thread started it) at the first start, or at every one (TRACKD_TEST_HOLD).
HOLD_THE_CLIENT_AT_START = """
import os, signal, sys
if sys.orig_argv[1:3] == ["-m", "trackd.daemon"]:
    with open(os.environ["TRACKD_TEST_STARTS"], "a") as starts:
        starts.write(f"started {os.getpid()}\\n")
    with open(os.environ["TRACKD_TEST_STARTS"]) as starts:
        first = len(starts.readlines()) == 1
    if first or os.environ["TRACKD_TEST_HOLD"] == "every":
        os.kill(os.getppid(), signal.SIGSTOP)
"""

def _env(paths: DaemonPaths, tmp_path: Path, hold: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HOLD_THE_CLIENT_AT_START)
    return inherited_env(
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), TRACKD_TEST_HOLD=hold,
        TRACKD_TEST_STARTS=str(tmp_path / "starts"), TRACKD_SOCKET=str(paths.socket),
        TRACKD_TRACKING_URI=str(tmp_path / "mlruns"), TRACKD_SPOOL_DIR=str(tmp_path / "spool"), PYTHONUNBUFFERED="1",
    )


def _starts(tmp_path: Path) -> list[int]:
    try:
        return [int(line.split()[1]) for line in (tmp_path / "starts").read_text().splitlines()]
    except FileNotFoundError:
        return []


def _held(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def _stop_the_daemon_it_started(job: Child, paths: DaemonPaths, tmp_path: Path, start: int) -> None:
    """Wait until the job's ``start``-th daemon answers with the job held, stop it with `trackd daemon
    stop`, and let the job run on: it cannot have seen that daemon answer."""
    wait_for(lambda: len(_starts(tmp_path)) >= start and _held(job.process.pid), timeout=30, message=f"daemon start {start}")
    wait_for(lambda: daemon_answers(paths.socket), timeout=30, message="the started daemon to answer")
    stop = subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "stop"], env=inherited_env(TRACKD_SOCKET=str(paths.socket)),
        capture_output=True, text=True, timeout=60,
    )
    assert stop.returncode == 0 and "stopped after writing everything" in stop.stdout, stop.stdout + stop.stderr
    os.kill(job.process.pid, signal.SIGCONT)


def test_a_client_whose_daemon_is_stopped_before_it_answers_starts_another(paths: DaemonPaths, tmp_path: Path) -> None:
    with Child(SHORT_JOB, [], _env(paths, tmp_path, "first")) as job:
        _stop_the_daemon_it_started(job, paths, tmp_path, 1)
        assert job.wait(60) == 0, job.stderr()
    # No "3 events were not delivered: ... none could be started". A line saying the exit waits for
    # the restarted daemon is allowed: its quiet wait is a second, which a loaded machine outlasts.
    said = job.stderr().splitlines()
    assert all(line.startswith("trackd: waiting ") for line in said), said
    assert len(_starts(tmp_path)) == 2
    assert not list((tmp_path / "spool").glob("*.spool"))
    run_id = job.out[-1].split()[1]
    run = MlflowClient(tracking_uri=str(tmp_path / "mlruns")).get_run(run_id)
    assert (run.info.status, run.data.params, run.data.metrics) == ("FINISHED", {"p": "1"}, {"loss": 0.5})


def test_a_client_whose_every_daemon_is_stopped_before_it_answers_stops_starting_and_says_they_were_stopped(
    paths: DaemonPaths, tmp_path: Path
) -> None:
    with Child(SHORT_JOB, [], _env(paths, tmp_path, "every")) as job:
        for start in range(1, MAX_ENDED_STARTS + 1):
            _stop_the_daemon_it_started(job, paths, tmp_path, start)
        assert job.wait(60) == 0, job.stderr()
    assert len(_starts(tmp_path)) == MAX_ENDED_STARTS  # bounded: no start after the last stop
    line = job.stderr()
    assert "none could be started" not in line, line
    assert (
        f"4 events were not delivered: no daemon answers at {paths.socket}: the trackd daemon started for {paths.socket} "
        f"was stopped (`trackd daemon stop`, a SIGTERM) before it answered this process ({MAX_ENDED_STARTS} starts, each stopped)"
    ) in line, line
    assert len(list((tmp_path / "spool").glob("*.spool"))) == 1
