"""Wills outlive their daemon: killed, crashed or stopped, the next daemon fails the runs of a process that died meanwhile.

The daemon kept its wills in memory. SIGKILLed (the OOM killer) or crashed, it lost every one: a
process that owned runs and died before it reached a new daemon left them RUNNING for ever.
Stopped, it kept those of exited processes only: a process killed in the second or two before it
reconnected to the next daemon left its runs RUNNING too. Each test kills the daemon and the
process for real and reads the run back with MLflow.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, wait_for
from test_wills import (
    FAILURE_REASON_TAG, WAIT_FOR_STDIN, finish, mlflow_run, owned_runs, start_child, wait_for_status,
    wait_until_no_will_is_pending,
)

from trackd._paths import DaemonPaths


def wills_file_names(paths: DaemonPaths, run_id: str) -> bool:
    """Whether the daemon's wills file holds ``run_id``."""
    try:
        return run_id in paths.wills.read_text()
    except FileNotFoundError:
        return False


def kill_the_daemon_then_go_on(daemon: DaemonProcess, child: subprocess.Popen[str], paths: DaemonPaths, run_id: str, said: str) -> None:
    """SIGKILL ``daemon`` once its wills file holds ``run_id``, then let ``child`` go on to say ``said``."""
    wait_for(lambda: wills_file_names(paths, run_id), timeout=20, message="the will kept in the wills file")
    daemon.kill()
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == said  # held: TRACKD_AUTOSTART=0 starts no daemon


def clean_up(child: subprocess.Popen[str], daemon: DaemonProcess | None) -> None:
    """Kill ``child`` if it runs on, and stop ``daemon`` (resumed if stopped)."""
    if child.poll() is None:
        child.kill()
        child.communicate(timeout=30)
    if daemon is not None:
        daemon.signal(signal.SIGCONT)
        assert daemon.stop() == 0, daemon.log()


@pytest.mark.parametrize("dies", ["before-the-next-daemon", "while-the-next-daemon-waits"])
@pytest.mark.parametrize("end", ["SIGKILL", "stop"])
def test_a_process_killed_between_two_daemons_gets_its_run_failed(
    socket_path: Path, store: Path, paths: DaemonPaths, end: str, dies: str
) -> None:
    # SIGKILL: the will died with the daemon. stop: the daemon kept the wills of exited processes
    # only, and the process was killed before it told the next daemon its runs (the restart window).
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(store, socket_path, WAIT_FOR_STDIN)  # TRACKD_AUTOSTART=0: it starts no daemon
    second = None
    try:
        wait_for(lambda: owned_runs(first) == 1, timeout=20, message="the run owned")
        if end == "SIGKILL":
            wait_for(lambda: wills_file_names(paths, run_id), timeout=20, message="the will kept in the wills file")
            assert stat.S_IMODE(paths.wills.stat().st_mode) == 0o600  # as the socket: the user's alone
            first.kill()
        else:
            assert first.stop() == 0
        if dies == "before-the-next-daemon":
            child.kill()
            assert finish(child) == -signal.SIGKILL
            second = DaemonProcess(socket_path).start()
        else:
            child.send_signal(signal.SIGSTOP)  # alive, but it cannot reach the next daemon
            second = DaemonProcess(socket_path).start()
            wait_for(lambda: second is not None and second.status()["wills_pending"] == 1, timeout=20, message="the will taken on")
            assert mlflow_run(store, run_id).info.status == "RUNNING"  # its process lives
            child.kill()
            assert finish(child) == -signal.SIGKILL
        run = wait_for_status(store, run_id, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
        assert run.data.metrics["loss"] == 1.0
    finally:
        clean_up(child, second)


def test_a_process_that_outlives_a_killed_daemon_and_ends_its_run_leaves_it_finished(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The next daemon takes on the will of a process that still runs: the process's reconnect must
    # take it back, and its end_run must stand (a will applied after it would not change a
    # FINISHED run, but one left pending kept the daemon watching a process that owns nothing).
    body = (
        WAIT_FOR_STDIN + "trackd.log_metric('loss', 9.0, step=3)\ntrackd.flush()\nprint('delivered', flush=True)\n"
        + WAIT_FOR_STDIN + "trackd.end_run()\n"
    )
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(store, socket_path, body, TRACKD_AUTOSTART="1")
    try:
        wait_for(lambda: wills_file_names(paths, run_id), timeout=20, message="the will kept in the wills file")
        first.kill()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "delivered"  # through a daemon it started
        started = DaemonProcess(socket_path)  # not started here: only asked for its status
        wait_for(
            lambda: started.status()["wills_pending"] == 0 and owned_runs(started) == 1,
            timeout=20, message="the will back with the process's connection",
        )
        _, err = child.communicate("\n", timeout=30)
        assert child.returncode == 0, err
        wait_for(
            lambda: (s := started.status())["clients_connected"] == 0 and s["wills_pending"] == 0,
            timeout=20, message="no client and no will left",
        )
        run = mlflow_run(store, run_id)
        assert run.info.status == "FINISHED" and FAILURE_REASON_TAG not in run.data.tags
        assert run.data.metrics["loss"] == 9.0
        assert started.status()["runs_failed_for_exited_clients"] == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)


def _gone_will(client_id: str, pid: int, store: Path, run_id: str) -> str:
    """A line of the wills file: the will of process ``pid``, gone, that owned ``run_id``."""
    return json.dumps({
        "client_id": client_id, "pid": pid, "started": None, "gone": True, "host": "h", "store_root": str(store),
        "run_ids": [run_id], "spool_path": "", "lost_at_ms": 1_700_000_000_000,
    })


def test_wills_past_the_cap_in_the_wills_file_are_said_in_one_line_and_the_newest_taken_on(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The daemon took on the first MAX_PENDING_WILLS wills of the file and dropped the rest without
    # a word: the newest, those of the connections the last daemon still had (processes perhaps
    # killed across the restart), while a will past the cap at run time forgets the oldest, logged.
    # The cap is lowered to 3 in this daemon's process; the file holds 5.
    mlflow = MlflowClient(tracking_uri=f"file:{store}")
    run_ids = [mlflow.create_run("0").info.run_id for _ in range(5)]
    paths.wills.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.wills.write_text("".join(_gone_will(f"c{i}", 4_000_000 + i, store, run_id) + "\n" for i, run_id in enumerate(run_ids)))
    daemon = DaemonProcess(socket_path, preamble="from trackd.daemon import _wills\n_wills.MAX_PENDING_WILLS = 3").start()
    try:
        for run_id in run_ids[2:]:
            assert "process 400000" in wait_for_status(store, run_id, "FAILED").data.tags[FAILURE_REASON_TAG]
        wait_until_no_will_is_pending(daemon)
        assert [mlflow_run(store, run_id).info.status for run_id in run_ids[:2]] == ["RUNNING", "RUNNING"]
        said = [line for line in daemon.log().splitlines() if "more than the 3" in line]
        assert len(said) == 1, daemon.log()
        assert " WARNING " in said[0] and f"{paths.wills} holds 5 wills" in said[0], said
        assert "forgot the 2 oldest: the runs they name stay as they are" in said[0], said
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_damaged_wills_file_is_said_in_one_line_and_the_other_wills_are_applied(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # Bytes that are not UTF-8 raised UnicodeDecodeError at startup: the daemon refused to start,
    # and every client spooled its events until someone removed the file.
    run_id = MlflowClient(tracking_uri=f"file:{store}").create_run("0").info.run_id
    will = {
        "client_id": "c1", "pid": 4_000_000, "started": None, "gone": True, "host": "h", "store_root": str(store),
        "run_ids": [run_id], "spool_path": "", "lost_at_ms": 1_700_000_000_000,
    }
    paths.wills.write_bytes(
        b"\xff\xfe\x00 not text\n" + json.dumps({**will, "pid": -1}).encode() + b"\n[1, 2]\n{\"pid\n"
        + json.dumps(will).encode() + b"\n"
    )
    daemon = DaemonProcess(socket_path).start()
    try:
        run = wait_for_status(store, run_id, "FAILED")
        assert "process 4000000 " in run.data.tags[FAILURE_REASON_TAG]
        wait_for(lambda: not paths.wills.exists(), timeout=20, message="the file rewritten: no will left")
        log = daemon.log()
        assert log.count(" ERROR ") == 1, log  # one line for the whole file
        assert "Ignored 4 damaged lines in" in log, log
    finally:
        assert daemon.stop() == 0, daemon.log()



def test_a_process_killed_while_it_resends_to_the_next_daemon_gets_its_run_failed(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The next daemon dropped the will the last one left as soon as the process reconnected, and the
    # process tells its runs again only after everything it resends: killed in between (here, with
    # 300,000 points logged while no daemon ran still to send), it left its run RUNNING for ever.
    body = (
        WAIT_FOR_STDIN + "for step in range(3, 300_003):\n    trackd.log_metric('loss', 1.0, step=step)\n"
        "print('logged', flush=True)\n" + WAIT_FOR_STDIN
    )
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(
        store, socket_path, body, TRACKD_MAX_BUFFERED="1000000", TRACKD_MAX_BUFFERED_BYTES=str(1024 * 1024 * 1024)
    )
    second = None
    try:
        kill_the_daemon_then_go_on(first, child, paths, run_id, "logged")
        connected = f"client pid {child.pid}@"
        before = first.log().count(connected)  # the daemons share their log file
        second = DaemonProcess(socket_path).start()
        wait_for(lambda: first.log().count(connected) > before, timeout=20, interval=0.001, message="the process back")
        second.signal(signal.SIGSTOP)  # its resent points not all read: its runs not told yet
        child.kill()
        assert finish(child) == -signal.SIGKILL
        second.signal(signal.SIGCONT)
        run = wait_for_status(store, run_id, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
    finally:
        clean_up(child, second)


def test_a_process_that_ended_its_run_while_no_daemon_ran_owns_nothing_in_the_next_daemon(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The next daemon holds the will the last one left for the process's connection until the
    # process tells its runs again: it must tell them also when it owns none now.
    body = WAIT_FOR_STDIN + "trackd.end_run()\nprint('ended', flush=True)\n" + WAIT_FOR_STDIN
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(store, socket_path, body)
    second = None
    try:
        kill_the_daemon_then_go_on(first, child, paths, run_id, "ended")
        second = DaemonProcess(socket_path).start()
        wait_for_status(store, run_id, "FINISHED")
        wait_for(lambda: second is not None and owned_runs(second) == 0, timeout=20, message="the process owning nothing")
        assert child.communicate("\n", timeout=30)[0] == "" and child.returncode == 0
        assert second.status()["runs_failed_for_exited_clients"] == 0
    finally:
        clean_up(child, second)
