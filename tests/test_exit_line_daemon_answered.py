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
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, mounted_tmpfs, wait_for

from trackd.protocol import Welcome
from trackd.store import StoreReader

pytestmark = pytest.mark.timeout(90)

POINTS = 1000

# Both scripts' start: a run, and with a filler path, its first point written, then that disk
# filled (a real ENOSPC for the store).
START = """
import sys, trackd
run_id, filler = sys.argv[1], sys.argv[2]
trackd.start_run(run_id=run_id)
if filler:
    trackd.log_metric("x", 0.0, step=0)
    trackd.flush(timeout=30)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc
"""

# Logs POINTS points of "x" (after the first, with a filler path), and then, with a filler path,
# waits for a line on stdin (the daemon has met the full disk). Then exits, or (argv[3] == "end_run")
# ends its run in the middle of the job, says so, and logs to a new run before it exits.
CHILD = START + """
how, start = sys.argv[3], 1 if filler else 0
for step in range(start, int(sys.argv[4])):
    trackd.log_metric("x", float(step), step=step)
if filler:
    print("ready", flush=True)
    sys.stdin.readline()
if how == "end_run":
    trackd.end_run()
    print("ended", flush=True)
    trackd.start_run()  # the job goes on: what it logs next is given up at exit
    trackd.log_metric("y", 1.0)
"""

SILENT_DAEMON = ("did not answer", "answered nothing", "has not answered")


@pytest.fixture(autouse=True)
def own_spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's children spool to a folder of their own: a client delivers the spool files it
    finds, and another test's, of a store on a disk since unmounted, was delivered to nothing."""
    monkeypatch.setenv("TRACKD_SPOOL_DIR", str(tmp_path / "spool"))


def run_script(code: str, args: list[str], env: dict[str, str], cue: Callable[[], None] | None) -> tuple[str, str]:
    """Run ``code`` to its end and return its (stdout, stderr). With ``cue``, the script prints
    "ready" and waits for a line on stdin: ``cue()`` runs between the two."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        if cue is not None:
            assert child.stdout.readline() == "ready\n"
            cue()
            child.stdin.write("go\n")
            child.stdin.flush()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 0, err
    return out, err


def run_child(
    socket_path: Path, store: Path, how: str, exit_timeout: str, filler: str = "", release: Callable[[], None] | None = None,
    run_id: str = "",
) -> str:
    """Run CHILD to its end and return its stderr (``release()`` runs once the disk is full)."""
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT=exit_timeout, TRACKD_AUTOSTART="0")
    out, err = run_script(CHILD, [run_id or uuid.uuid4().hex, filler, how, str(POINTS)], env, release)
    assert (how != "end_run") or out == "ended\n", (out, err)
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
    refused = "The trackd daemon already serves 1 connection, its limit (--max-connections 1)"
    assert f"the daemon at {socket_path} refused this client's last attempt to connect ({refused}" in err, err
    assert not any(words in err for words in SILENT_DAEMON), err
    if how == "end_run":
        # The line while end_run waits says why it waits (TRACKD_EXIT_TIMEOUT=3 leaves 2 s after the first).
        assert f"The daemon at {socket_path} refused this client's last attempt to connect ({refused}" in err, err
        assert "; trackd tries again." in err, err


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


# Logs a point, waits for a line on stdin (the test's cue: the daemon has refused it, or met the
# full disk the child made with a filler path), then flushes with a short timeout, prints the
# FlushTimeout, and logs argv[3] points into a buffer of 1000 (TRACKD_ON_FULL=drop) before it exits.
FLOOD = START + """
points = int(sys.argv[3])
# A point or two could fit the last page of the metric file: a thousand need a new one.
first = 1000 if filler else 2
for step in range(1, first):
    trackd.log_metric("x", float(step), step=step)
print("ready", flush=True)
sys.stdin.readline()
try:
    trackd.flush(timeout=2)
except trackd.FlushTimeout as exc:
    print("timeout:", exc, flush=True)
for step in range(first, points):
    trackd.log_metric("x", float(step), step=step)
"""


def run_flood(socket_path: Path, store: Path, points: int, cue: Callable[[], None], filler: str = "", **env: str) -> tuple[str, str]:
    """Run FLOOD to its end; ``cue()`` runs once it logged, before it flushes. Returns (stdout, stderr)."""
    return run_script(FLOOD, [uuid.uuid4().hex, filler, str(points)], child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="1", TRACKD_AUTOSTART="0",
        TRACKD_MAX_BUFFERED="1000", TRACKD_ON_FULL="drop", **env,
    ), cue)


def test_a_flush_and_the_full_buffer_line_quote_the_daemons_refusal(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # The spool cannot be written either, so the buffer fills. The full-buffer line said "no daemon
    # answers at ...", and flush(timeout=2) "The trackd daemon did not answer within 2 s".
    (tmp_path / "not-a-folder").write_text("")
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    try:
        holder = RawClient(socket_path)
        try:
            assert isinstance(holder.hello(str(store)), Welcome)
            # (Read in its log: a status request would be refused too.)
            out, err = run_flood(
                socket_path, store, 5000,
                lambda: wait_for(lambda: "Refused a connection (too_many_connections)" in daemon.log(), 30, message="the child refused"),
                TRACKD_SPOOL_DIR=str(tmp_path / "not-a-folder" / "spool"),
            )
        finally:
            holder.close()
    finally:
        assert daemon.stop() == 0, daemon.log()
    refused = f"the daemon at {socket_path} refused this client's last attempt to connect (The trackd daemon already serves 1 connection"
    assert f"timeout: {refused[:1].upper()}{refused[1:]}" in out, (out, err)
    assert f"the event buffer is full (1000 events) because {refused}" in err, err
    assert "no daemon answers" not in err and not any(words in out + err for words in SILENT_DAEMON), (out, err)


def test_a_flush_and_the_full_buffer_line_name_the_full_store_not_a_slow_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    # flush(timeout=2) said "The trackd daemon did not answer within 2 s", and the full-buffer line
    # that the daemon "is not keeping up", while it held every event for a full disk.
    disk = tmp_path / "disk"
    disk.mkdir()
    store, filler = disk / "mlruns", disk / "filler"
    points = 140_000  # past the window of events awaiting their ack (131,072) and the buffer
    with mounted_tmpfs(disk, "size=16m"):
        try:
            out, err = run_flood(
                daemon.paths.socket, store, points,
                lambda: wait_for(lambda: daemon.status()["write_errors"] > 0, 30, message="the daemon to meet the full disk"),
                filler=str(filler),
            )
        finally:
            filler.unlink(missing_ok=True)
        wait_for(lambda: daemon.status()["backlog_records"] == 0, 60, message="the daemon to write what it kept")
    full = f"the store at {store} cannot be written (No space left on device)"
    keeps = f"so the daemon at {daemon.paths.socket} keeps the events it received and writes them once the store takes writes again"
    assert f"timeout: {full[:1].upper()}{full[1:]}" in out and keeps in out, (out, err)
    assert f"the event buffer is full (1000 events) because {full}" in err and keeps in err, err
    assert "not keeping up" not in err and not any(words in out + err for words in SILENT_DAEMON), (out, err)
