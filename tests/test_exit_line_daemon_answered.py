"""The line exit, close() and end_run print when they stop waiting says what the daemon said: a
daemon that refused this client, or that holds its events for a store refusing writes, answered.

Both used to end in "the daemon at ... did not answer within N s" (at exit) or "answered nothing
for N s" (end_run in the middle of a job), which sent users looking for a stalled daemon.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, wait_for

from trackd.protocol import Welcome
from trackd.store import StoreReader

pytestmark = pytest.mark.timeout(90)

POINTS = 1000

# Logs POINTS points of "x"; with a filler path, first writes one point, then fills that disk and
# waits for a line on stdin (the daemon has met the full disk). Then exits, or (argv[3] == "end_run")
# ends its run in the middle of the job and says so.
CHILD = """
import sys, trackd
run_id, filler, how = sys.argv[1], sys.argv[2], sys.argv[3]
trackd.start_run(run_id=run_id)
start = 0
if filler:
    trackd.log_metric("x", 0.0, step=0)
    trackd.flush(timeout=30)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc
    start = 1
for step in range(start, int(sys.argv[4])):
    trackd.log_metric("x", float(step), step=step)
if filler:
    print("full", flush=True)
    sys.stdin.readline()
if how == "end_run":
    trackd.end_run()
    print("ended", flush=True)
"""

SILENT_DAEMON = ("did not answer", "answered nothing")


def run_child(
    socket_path: Path, store: Path, how: str, exit_timeout: str, filler: str = "", release: object = None, run_id: str = "",
) -> str:
    """Run CHILD to its end and return its stderr (``release()`` runs once it printed "full")."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, run_id or uuid.uuid4().hex, filler, how, str(POINTS)],
        env=child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT=exit_timeout, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        if filler:
            assert child.stdout.readline() == "full\n"
            assert callable(release)
            release()
            child.stdin.write("go\n")
            child.stdin.flush()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert (how != "end_run") or out.endswith("ended\n"), (out, err)
    return err


@pytest.mark.parametrize(("how", "exit_timeout"), [("exit", "1"), ("end_run", "3")])
def test_a_daemon_over_its_connection_limit_is_said_to_refuse_not_to_be_silent(
    socket_path: Path, store: Path, how: str, exit_timeout: str
) -> None:
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    try:
        holder = RawClient(socket_path)
        try:
            assert isinstance(holder.hello(str(store)), Welcome)
            err = run_child(socket_path, store, how, exit_timeout)
        finally:
            holder.close()
    finally:
        assert daemon.stop() == 0, daemon.log()
    refused = "The trackd daemon already serves 1 connections, its limit (--max-connections 1)"
    assert f"the daemon at {socket_path} refused this client's last attempt to connect ({refused}" in err, err
    assert not any(words in err for words in SILENT_DAEMON), err
    if how == "end_run":
        # The line while end_run waits says why it waits (TRACKD_EXIT_TIMEOUT=3 leaves 2 s after the first).
        assert f"It refused this client, and trackd tries again: {refused}" in err, err


@pytest.mark.parametrize("how", ["exit", "end_run"])
def test_a_store_on_a_full_disk_is_named_when_the_wait_ends_and_the_daemon_writes_what_it_kept(
    small_disk: Path, daemon: DaemonProcess, how: str
) -> None:
    store, filler, run_id = small_disk / "mlruns", small_disk / "filler", uuid.uuid4().hex
    full = "cannot be written (No space left on device)"
    try:
        err = run_child(
            daemon.paths.socket, store, how, "3", filler=str(filler), run_id=run_id,
            release=lambda: wait_for(lambda: daemon.status()["write_errors"] > 0, 30, message="the daemon to meet the full disk"),
        )
    finally:
        filler.unlink(missing_ok=True)  # the disk takes writes again (and the daemon stops cleanly)
    assert f"to be written by the daemon at {daemon.paths.socket}" in err and f"It cannot write to the store now: The store at {store} {full}" in err, err
    assert f"events were not delivered: the store at {store} {full}" in err, err
    kept = re.search(rf"so the daemon at {re.escape(str(daemon.paths.socket))} keeps the events it received \((\d+) were sent to it\)", err)
    assert kept is not None and int(kept.group(1)) >= POINTS - 1, err  # the points, and the run's end if it went
    assert not any(words in err for words in SILENT_DAEMON), err
    # What the line says the daemon does: every point it kept is written, once, with no spool delivered.
    reader = StoreReader(store)
    wait_for(lambda: len(reader.get_metric_history(run_id, "x")) >= POINTS, 60, message="the kept points written")
    assert [m.step for m in reader.get_metric_history(run_id, "x")] == list(range(POINTS))
