"""A run left in the spool file of a process that was killed is failed once the spool is delivered.

A process that never reached a daemon (none running, ``TRACKD_AUTOSTART=0``, a start that failed)
spools its events and tells no daemon which runs it owns. SIGKILLed with its run in its spool,
``trackd sync`` delivered the run and it stayed RUNNING for ever. The spool carries the will now
(``SpooledWill`` frames, with the process's pid and start time), and its delivery tells the daemon.
Each test runs the process for real, kills it for real, delivers with ``trackd sync`` to a real
daemon and reads the runs back with MLflow.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, create_run_record, metric_records, wait_for
from test_wills import FAILURE_REASON_TAG, finish, mlflow_run, wait_for_status, wait_until_no_will_is_pending
from test_wills_restart import clean_up, wills_file_names

from trackd._paths import DaemonPaths
from trackd.cli import main as cli_main
from trackd.client._spool import Spool
from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, encode_frame

# Every flush below waits for the spool: no daemon answers, and none is started.
NO_DAEMON = {"TRACKD_AUTOSTART": "0", "TRACKD_CONNECT_TIMEOUT": "1", "TRACKD_EXIT_TIMEOUT": "1"}
PROLOGUE = """
import os, signal, sys, trackd
trackd.set_tracking_uri({store!r})

def spool():
    # Returns once what was logged is in the spool file: no daemon answers.
    try:
        trackd.flush()
    except trackd.DaemonUnavailable:
        pass

def said(word):
    print(word, flush=True)
    sys.stdin.readline()
"""
SIGKILL_SELF = "os.kill(os.getpid(), signal.SIGKILL)\n"
# Start a run, log a point, spool them, say the run id.
SPOOL_A_RUN = """
run = trackd.start_run()
trackd.log_metric("loss", 0.5, step=1)
spool()
print(run.info.run_id, flush=True)
"""


def start_child(store: Path, socket_path: Path, spool_dir: Path, body: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROLOGUE.format(store=str(store)) + body],
        env=child_env(socket_path, TRACKD_SPOOL_DIR=str(spool_dir), **{**NO_DAEMON, **env}),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    said = child.stdout.readline().strip()
    assert said, child.communicate(timeout=30)[1]
    return said


def sync(socket_path: Path, spool_dir: Path) -> None:
    assert cli_main(["sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)]) == 0
    assert not list(spool_dir.glob("*.spool"))


def test_a_process_killed_with_its_run_only_in_its_spool_gets_it_failed_once_trackd_sync_delivers_it(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # The run was written RUNNING with its point, and stayed RUNNING for ever.
    spool_dir = tmp_path / "spool"
    child = start_child(store, socket_path, spool_dir, SPOOL_A_RUN + SIGKILL_SELF)
    run_id = line(child)
    assert finish(child) == -signal.SIGKILL
    daemon = DaemonProcess(socket_path).start()
    try:
        sync(socket_path, spool_dir)
        run = wait_for_status(store, run_id, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert run.data.metrics["loss"] == 0.5
        assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
        assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 1
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_run_its_process_ended_in_its_spool_before_it_was_killed_stays_finished(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # The spool names the run (it was owned when its creation was spooled) and holds its end after.
    spool_dir = tmp_path / "spool"
    child = start_child(store, socket_path, spool_dir, SPOOL_A_RUN + "trackd.end_run()\nspool()\n" + SIGKILL_SELF)
    run_id = line(child)
    assert finish(child) == -signal.SIGKILL
    daemon = DaemonProcess(socket_path).start()
    try:
        sync(socket_path, spool_dir)
        assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
        run = mlflow_run(store, run_id)
        assert run.info.status == "FINISHED"
        assert FAILURE_REASON_TAG not in run.data.tags
        assert f"names runs {run_id}, which its process {child.pid} owned as it spooled" in daemon.log()  # told, and left alone
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_the_spool_of_a_process_that_lives_on_is_not_failed_until_that_process_exits(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # Locked while its process lives, the spool is left to it. A process that exec's another
    # program (a self-restarting job) frees the lock and keeps its pid and start time: the runs
    # are delivered, and failed only once that program exits without anyone having ended them.
    spool_dir, other_dir = tmp_path / "spool", tmp_path / "other"
    body = SPOOL_A_RUN + "said('spooled')\nos.execv(sys.executable, [sys.executable, '-c', 'import sys; sys.stdin.readline()'])\n"
    live = start_child(store, socket_path, spool_dir, body)
    live_run = line(live)
    assert line(live) == "spooled"
    # A killed process's spool, delivered after the live one's: once its run is failed, the
    # daemon has looked at the live process's will too.
    killed = start_child(store, socket_path, other_dir, SPOOL_A_RUN + SIGKILL_SELF)
    killed_run = line(killed)
    assert finish(killed) == -signal.SIGKILL
    daemon = DaemonProcess(socket_path).start()
    try:
        assert cli_main(["sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)]) == 0
        assert list(spool_dir.glob("*.spool"))  # its process holds it: left to it
        assert live.stdin is not None
        live.stdin.write("\n")  # exec: the lock goes, the process stays
        live.stdin.flush()
        wait_for(lambda: _lock_free(spool_dir), timeout=20, message="the spool's lock released by exec")
        sync(socket_path, spool_dir)
        sync(socket_path, other_dir)
        wait_for_status(store, killed_run, "FAILED")
        wait_for(lambda: daemon.status()["wills_pending"] == 1, timeout=20, message="the live process's will only")
        assert mlflow_run(store, live_run).info.status == "RUNNING"
        assert live.poll() is None
        _, err = live.communicate("\n", timeout=30)  # the program it exec'd exits
        assert live.returncode == 0, err
        run = wait_for_status(store, live_run, "FAILED")
        assert f"process {live.pid} " in run.data.tags[FAILURE_REASON_TAG]
    finally:
        clean_up(live, None)
        assert daemon.stop() == 0, daemon.log()


def _lock_free(spool_dir: Path) -> bool:
    """Whether the one spool file in ``spool_dir`` can be locked (its writer holds it no more)."""
    (path,) = spool_dir.glob("*.spool")
    with path.open("rb") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_a_process_that_told_a_daemon_its_run_then_spooled_the_next_one_gets_only_the_one_it_had_not_ended_failed(
    socket_path: Path, store: Path, tmp_path: Path, paths: DaemonPaths
) -> None:
    # Its first run reached a daemon, whose wills file kept it; the daemon was killed, and the
    # process ended that run and started another while none ran, both spooled, then was killed.
    # The next daemon applied the first run's will (its end, delivered, left it FINISHED), and the
    # second run stayed RUNNING for ever: no daemon had heard of it.
    spool_dir = tmp_path / "spool"
    body = (
        "run = trackd.start_run()\ntrackd.log_metric('loss', 0.1, step=0)\ntrackd.flush()\nsaid(run.info.run_id)\n"
        "trackd.end_run()\n" + SPOOL_A_RUN + SIGKILL_SELF
    )
    first = DaemonProcess(socket_path).start()
    child = start_child(store, socket_path, spool_dir, body)
    second = None
    try:
        told = line(child)
        wait_for(lambda: wills_file_names(paths, told), timeout=20, message="the will kept in the wills file")
        first.kill()
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        spooled = line(child)
        assert finish(child) == -signal.SIGKILL
        second = DaemonProcess(socket_path).start()
        sync(socket_path, spool_dir)
        run = wait_for_status(store, spooled, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert wait_until_no_will_is_pending(second)["runs_failed_for_exited_clients"] == 1
        ended = mlflow_run(store, told)
        assert ended.info.status == "FINISHED" and FAILURE_REASON_TAG not in ended.data.tags
    finally:
        clean_up(child, second)


def test_a_spool_an_older_trackd_wrote_without_a_will_is_delivered_as_before(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # A spool of protocol 8 holds its Hello and batches only: delivered whole, its run left as it
    # is (no process is known to own it), and nothing said of a will.
    spool_dir = tmp_path / "spool"
    exited = subprocess.Popen([sys.executable, "-c", "pass"])  # the process that "wrote" it, gone
    assert exited.wait(timeout=30) == 0
    hello = Hello(
        protocol_version=PROTOCOL_VERSION - 1, client_id="older", pid=exited.pid, host=socket.gethostname(), store_root=str(store),
    )
    records = [create_run_record("olderrun"), *metric_records("olderrun", "loss", 3)]
    spool = Spool(spool_dir, hello)
    spool.append([(1, encode_frame(Batch(seq=1, records=records)), len(records))])
    spool.abandon()  # as its process's death does: the file stays, unlocked
    sync(daemon.paths.socket, spool_dir)
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
    run = mlflow_run(store, "olderrun")
    assert run.info.status == "RUNNING" and run.data.metrics["loss"] == 1.0
    assert "names runs" not in daemon.log()


def test_the_background_delivery_by_another_process_gets_the_run_failed_too(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The next trackd process to connect delivers the spools exited processes left, as `trackd sync` does.
    spool_dir = tmp_path / "spool"
    nowhere = daemon.paths.socket.with_name("none.sock")  # no daemon answers the killed process
    killed = start_child(store, nowhere, spool_dir, SPOOL_A_RUN + SIGKILL_SELF)
    run_id = line(killed)
    assert finish(killed) == -signal.SIGKILL
    body = "trackd.log_param('a', 1)\ntrackd.flush()\nsaid('connected')\n"
    other = start_child(store, daemon.paths.socket, spool_dir, body)
    try:
        assert line(other) == "connected"
        # Delivered ORPHAN_DELIVERY_DELAY after it connected: not in the store before.
        wait_for(lambda: (store / "0" / run_id / "meta.yaml").exists(), timeout=20, message="the spooled run delivered")
        run = wait_for_status(store, run_id, "FAILED")
        assert f"process {killed.pid} " in run.data.tags[FAILURE_REASON_TAG]
        _, err = other.communicate("\n", timeout=30)
        assert other.returncode == 0, err
    finally:
        clean_up(other, None)
