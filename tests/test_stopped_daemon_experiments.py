"""A stopped (SIGSTOP) or hung daemon stops no job whose experiment exists, and is named when it must answer.

``set_experiment(name)`` asked the daemon for the experiment's id even when ./mlruns held it: with
the daemon stopped, every new process of a benchmark failed there after 10 s, logged nothing and
spooled nothing, while the same job started by experiment id logged, spooled at exit and was
delivered by `trackd sync`. Its error said the daemon "is unreachable; none answered within 10 s
and none could be started. Start one with `trackd daemon start`" (which says it is already
running), or, at random, that it "is starting".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python

from trackd import Client, ClientConfig
from trackd.store._experiment_writes import CHEAP_EXPERIMENTS

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

# Short, so that each child gives the stopped daemon up quickly; the behaviour is the same at 10 s.
CONNECT_TIMEOUT = "1"
EXIT_TIMEOUT = "3"

JOB = """
    import os, sys, trackd
    if os.environ.get("HOW") == "set_experiment":
        trackd.set_experiment("suite")
    with trackd.start_run(run_name="b1"):
        trackd.log_params({"i": 1, "mode": "ok"})
        for step in range(20):
            trackd.log_metric("lat", 1 + step / 100, step=step)
"""


@contextlib.contextmanager
def stopped(daemon: DaemonProcess) -> Iterator[None]:
    """The daemon SIGSTOPped for the block, resumed after (so the fixture can stop it)."""
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(daemon.pid, signal.SIGCONT)


def _env(daemon: DaemonProcess, store: Path, spool_dir: Path, **extra: str) -> dict[str, str]:
    return child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
        TRACKD_CONNECT_TIMEOUT=CONNECT_TIMEOUT, TRACKD_EXIT_TIMEOUT=EXIT_TIMEOUT, **extra,
    )


def _existing_experiment(daemon: DaemonProcess, store: Path, others: int = 0) -> str:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        for index in range(others):
            client.create_experiment(f"other-{index}")
        return client.create_experiment("suite")


@pytest.mark.parametrize("how", ["set_experiment", "set_experiment in a large store", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"])
def test_a_job_whose_experiment_exists_logs_past_a_stopped_daemon_and_sync_delivers_it(
    daemon: DaemonProcess, store: Path, tmp_path: Path, how: str
) -> None:
    # This used to raise DaemonUnavailable in set_experiment (or start_run, by name), after 10 s,
    # with nothing logged or spooled.
    # A store of more than CHEAP_EXPERIMENTS experiments is read once the daemon has not answered.
    experiment_id = _existing_experiment(daemon, store, others=CHEAP_EXPERIMENTS if "large" in how else 0)
    spool_dir = tmp_path / "spool"
    extra = {"set_experiment": {"HOW": how}, "set_experiment in a large store": {"HOW": "set_experiment"}, "MLFLOW_EXPERIMENT_NAME": {how: "suite"}, "MLFLOW_EXPERIMENT_ID": {how: experiment_id}}[how]
    with stopped(daemon):
        result = run_python(textwrap.dedent(JOB), _env(daemon, store, spool_dir, **extra))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert len(list(spool_dir.glob("*.spool"))) == 1, result.stderr
        # Exit's line said of the stopped daemon that it "is starting (started by this process or another)".
        assert "is starting" not in result.stderr, result.stderr
    synced = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert synced.returncode == 0, synced
    [run] = MlflowClient(str(store)).search_runs([experiment_id])
    assert (run.info.run_name, run.info.status, run.data.params) == ("b1", "FINISHED", {"i": "1", "mode": "ok"})
    history = MlflowClient(str(store)).get_metric_history(run.info.run_id, "lat")
    assert [m.step for m in history] == list(range(20))  # each point once
    assert [e.name for e in MlflowClient(str(store)).search_experiments()].count("suite") == 1


def test_a_new_experiment_name_with_a_stopped_daemon_names_it_and_how_to_resume_it(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Creating needs the daemon (it assigns ids): the error said "unreachable ... none could be
    # started. Start one with `trackd daemon start`", or that the daemon "is starting".
    _existing_experiment(daemon, store)
    code = """
        import trackd
        try:
            trackd.set_experiment("fresh")
        except trackd.DaemonUnavailable as exc:
            print(exc)
    """
    with stopped(daemon):
        result = run_python(textwrap.dedent(code), _env(daemon, store, tmp_path / "spool"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Cannot get or create experiment 'fresh': the trackd daemon at {daemon.paths.socket} (pid {daemon.pid}) "
        f"accepts connections but did not answer within {CONNECT_TIMEOUT} s: it is stopped (SIGSTOP, or Ctrl-Z in "
        f"its terminal): `kill -CONT {daemon.pid}` resumes it, `trackd daemon stop` ends it.\n"
    )
    assert "fresh" not in [e.name for e in MlflowClient(str(store)).search_experiments()]


def test_status_of_a_stopped_daemon_says_it_is_stopped_and_how_to_resume_it(daemon: DaemonProcess) -> None:
    # It said only that a daemon holding the lock "is starting, stopping or hung"; `trackd daemon
    # stop` then waited its whole timeout, its SIGTERM pending while the daemon was stopped.
    with stopped(daemon):
        result = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "daemon", "status", "--socket", str(daemon.paths.socket)],
            env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"trackd daemon pid {daemon.pid} listens on {daemon.paths.socket} but does not answer; " in result.stderr
    assert f"; it is stopped (SIGSTOP, or Ctrl-Z in its terminal): `kill -CONT {daemon.pid}` resumes it" in result.stderr
    assert "starting, stopping or hung" not in result.stderr


def test_stop_ends_a_stopped_daemon(daemon: DaemonProcess) -> None:
    # Its SIGTERM stayed pending while the daemon was stopped: stop waited its whole timeout,
    # exited 1 ("did not exit within 5 s"), and the daemon shut down whenever something resumed it.
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", str(daemon.paths.socket), "--timeout", "5"],
            env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGCONT)
    assert result.returncode == 0, result
    assert "stopped after writing everything it had received" in result.stdout, result
    assert daemon.process is not None and daemon.process.wait(timeout=10) == 0
