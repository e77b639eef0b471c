"""A daemon SIGKILLed right after it learned a will loses none: the wills journal has it.

The daemon kept its wills in ``trackd.sock.wills``, rewritten at most every 0.1 s: a process
that connected and started its run, with the daemon SIGKILLed (the OOM killer, under load)
before that rewrite and the process killed next, left its run RUNNING for ever (a chaos run: the
next daemon never heard of the will). Each change is appended to ``trackd.sock.wills.log`` before
the daemon reads the connection's next message now, so before it writes the batch that creates
the run. The tests kill the daemon and the process for real and read the run back with MLflow.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, fill, mounted_tmpfs, wait_for
from test_wills import FAILURE_REASON_TAG, WAIT_FOR_STDIN, finish, mlflow_run, wait_for_status, wait_until_no_will_is_pending
from test_wills_restart import clean_up

from trackd._paths import DaemonPaths

# Starts its run and waits: the test kills it.
CHILD = "import sys, trackd\ntrackd.set_tracking_uri(sys.argv[1])\ntrackd.start_run()\n" + WAIT_FOR_STDIN


def run_folder(store: Path) -> Path | None:
    """The one run's folder, once its creation is in the store (its meta.yaml)."""
    # Experiment 0's folder only: a glob of the whole store walked into a .trackd-*.trash folder
    # the daemon was removing, and raised FileNotFoundError.
    try:
        found = [path.parent for path in (store / "0").glob("*/meta.yaml")]
    except FileNotFoundError:
        return None
    return found[0] if found else None


def test_a_daemon_killed_as_soon_as_a_run_is_created_leaves_its_will_to_the_next(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The daemon is SIGKILLed as soon as the run's meta.yaml is in the store, well inside the
    # 0.1 s between two rewrites of the wills file: it used to take the will with it.
    first = DaemonProcess(socket_path).start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)], env=child_env(socket_path, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    second = None
    try:
        wait_for(lambda: run_folder(store) is not None, timeout=30, interval=0.0005, message="the run in the store")
        first.kill()
        folder = run_folder(store)
        assert folder is not None
        assert stat.S_IMODE(paths.wills_journal.stat().st_mode) == 0o600  # as the socket: the user's alone
        child.kill()
        assert finish(child) == -signal.SIGKILL
        second = DaemonProcess(socket_path).start()
        run = wait_for_status(store, folder.name, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        wait_until_no_will_is_pending(second)
    finally:
        clean_up(child, second)


def _will(client_id: str, pid: int, store: Path, run_id: str) -> dict[str, object]:
    """A will as the daemon keeps it: process ``pid``, gone, owned ``run_id``."""
    return {
        "client_id": client_id, "pid": pid, "started": None, "gone": True, "host": "h", "store_root": str(store),
        "run_ids": [run_id], "spool_path": "", "lost_at_ms": 1_700_000_000_000,
    }


def _line(client_id: str, will: dict[str, object] | None) -> str:
    return json.dumps({"client_id": client_id, "will": will}) + "\n"


def test_the_journal_is_replayed_on_the_wills_file_in_order_and_a_torn_last_line_is_said_in_one_line(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # What a daemon killed as it appended leaves: the file, lines after it (one client's will
    # twice, the second time ended: it must not come back), and a part of a line.
    mlflow = MlflowClient(tracking_uri=f"file:{store}")
    in_file, ended, journaled = (mlflow.create_run("0").info.run_id for _ in range(3))
    paths.wills.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.wills.write_text(json.dumps(_will("c1", 4_000_001, store, in_file)) + "\n" + json.dumps(_will("c2", 4_000_002, store, ended)) + "\n")
    paths.wills_journal.write_text(
        _line("c2", _will("c2", 4_000_002, store, ended)) + _line("c3", _will("c3", 4_000_003, store, journaled))
        + _line("c2", None) + _line("c4", _will("c4", 4_000_004, store, ended))[:40]
    )
    daemon = DaemonProcess(socket_path).start()
    try:
        for run_id in (in_file, journaled):
            assert wait_for_status(store, run_id, "FAILED").info.status == "FAILED"
        wait_until_no_will_is_pending(daemon)
        assert mlflow_run(store, ended).info.status == "RUNNING"
        assert daemon.status()["runs_failed_for_exited_clients"] == 2
        said = [line for line in daemon.log().splitlines() if "Ignored" in line]
        assert len(said) == 1 and " WARNING " in said[0] and f"1 damaged line in {paths.wills_journal}" in said[0], said
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert not paths.wills_journal.exists() and not paths.wills.exists()  # no will left: nothing beside the socket


@pytest.mark.timeout(120)
def test_a_journal_the_full_disk_refuses_is_said_once_and_the_daemon_fails_the_run_all_the_same(
    socket_path: Path, store: Path, paths: DaemonPaths, tmp_path: Path
) -> None:
    # The socket's folder full (a small $XDG_RUNTIME_DIR): the change cannot be appended; the
    # daemon goes on, with the will in memory and its file tried again, as before the journal.
    log = tmp_path / "daemon.log"  # elsewhere: the full disk would refuse the log's lines too
    with mounted_tmpfs(socket_path.parent, "size=1m,mode=0700"):
        daemon = DaemonProcess(socket_path, "--log-file", str(log)).start()
        filler = socket_path.parent / "filler"
        fill(filler)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store)], env=child_env(socket_path, TRACKD_AUTOSTART="0"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_for(lambda: "Could not append a change of the wills" in log.read_text(), timeout=30, message="the refusal said")
            filler.unlink()  # the daemon's write journal, beside the socket too, takes the run's creation now
            wait_for(lambda: run_folder(store) is not None, timeout=30, message="the run in the store")
            folder = run_folder(store)
            assert folder is not None
            child.kill()
            assert finish(child) == -signal.SIGKILL
            run = wait_for_status(store, folder.name, "FAILED")
            assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)
            code = daemon.stop()
        assert code == 0, log.read_text()
    said = log.read_text()
    assert said.count("Could not append a change of the wills") == 1, said
    assert "Appending the changes of the wills to" in said, said


def test_a_stop_with_no_journal_logs_no_warning(socket_path: Path) -> None:
    # A user review's daemon log: "WARNING Could not remove .../t.sock.wills.log: [Errno 2] No such
    # file" after a stop with nothing to do.
    daemon = DaemonProcess(socket_path).start()
    assert daemon.stop() == 0
    assert "Could not remove" not in daemon.log(), daemon.log()
