"""Output wording from the session-26 output review: each line names what the user needs to act on."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, create_run_record, metric_records, wait_for
from mlflow.tracking import MlflowClient

from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, Welcome, encode_frame

pytestmark = pytest.mark.timeout(120)

RUN_ID = "0123456789abcdef0123456789abcdef"


def _spool_of_a_gone_process(spool_dir: Path, store: Path, client_id: str = "gone") -> Path:
    """A spool file left by an exited process: its Hello, and a batch creating RUN_ID with 3 points."""
    spool_dir.mkdir(exist_ok=True)
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=1, host=socket.gethostname(), store_root=str(store))
    path = spool_dir / f"{client_id}.spool"
    path.write_bytes(encode_frame(hello) + encode_frame(Batch(seq=1, records=[create_run_record(RUN_ID), *metric_records(RUN_ID, "loss", 3)])))
    return path


def _sync(socket_path: Path, spool_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir), *args],
        capture_output=True, text=True, timeout=60, env=child_env(socket_path),
    )


def test_sync_to_a_stopped_daemon_names_its_pid_and_how_to_resume_it(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # It said "did not answer the handshake within 5 s", where `trackd daemon status` names the
    # pid, that it is stopped, and `kill -CONT <pid>`.
    spool_dir = tmp_path / "spool"
    path = _spool_of_a_gone_process(spool_dir, store)
    with daemon.paused():
        result = _sync(daemon.paths.socket, spool_dir, "--timeout", "1")
    assert result.returncode == 1
    assert f"(pid {daemon.pid})" in result.stderr and "it is stopped" in result.stderr, result.stderr
    assert f"`kill -CONT {daemon.pid}` resumes it" in result.stderr, result.stderr
    assert path.exists()  # left for the next sync


# Logs a point every 5 ms until file argv[1] exists.
LOG_UNTIL_TOLD = """
import os, sys, time, trackd
with trackd.start_run():
    step = 0
    while not os.path.exists(sys.argv[1]):
        trackd.log_metric("x", float(step), step=step)
        step += 1
        time.sleep(0.005)
"""


def test_a_process_retrying_with_autostart_off_says_no_daemon_answers_and_how_to_start_one(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # It said "The trackd daemon at <socket> is unreachable: No such file or directory. Holding N
    # events and retrying.": the errno's words, and nothing of what would end the wait.
    stop = tmp_path / "stop"
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_CONNECT_TIMEOUT="60",  # no spill while it retries: the retrying line comes first
    )
    child = subprocess.Popen([sys.executable, "-c", LOG_UNTIL_TOLD, str(stop)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr is not None
        first = child.stderr.readline()
        stop.touch()
        rest = child.communicate(timeout=60)[1]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert first.startswith(f"trackd: no daemon answers at {socket_path} and TRACKD_AUTOSTART=0 starts none. Holding "), first + rest
    assert first.rstrip("\n").endswith(" events and retrying until one answers: `trackd daemon start` starts one."), first + rest
    assert "No such file or directory" not in first + rest


def test_status_names_the_log_file_that_says_why_the_last_daemon_ended(socket_path: Path, tmp_path: Path) -> None:
    # "killed or crashed: see the log" named no file, and a daemon logs where --log-file says.
    first = DaemonProcess(socket_path).start()
    first.kill()  # SIGKILL: its pid file stays, with no exit report
    log = tmp_path / "elsewhere.log"
    second = DaemonProcess(socket_path, "--log-file", str(log)).start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "daemon", "status", "--socket", str(socket_path)],
            capture_output=True, text=True, timeout=60, env=child_env(socket_path),
        )
    finally:
        assert second.stop() == 0, second.log()
    # The first daemon wrote to the socket's log, not to the second's --log-file (review: it named the second's).
    assert (
        f"pid {first.pid} ended without a clean exit before this one started (killed or crashed: see the log it wrote "
        f"to, {socket_path}.log for a daemon trackd starts; this daemon logs to {log})"
    ) in result.stdout, result.stdout
    assert f"pid {first.pid}" in Path(f"{socket_path}.log").read_text()


def test_status_rounds_its_uptime_as_it_rounds_the_span_its_rates_are_over(daemon: DaemonProcess) -> None:
    # A daemon 5.8 s old said "uptime 5 s" beside "events/s over the last 5.8 s".
    result = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "daemon", "status", "--socket", str(daemon.paths.socket)],
        capture_output=True, text=True, timeout=60, env=child_env(daemon.paths.socket),
    )
    uptime = re.search(r"\n  uptime +(.+)\n", result.stdout)
    windows = set(re.findall(r"events/s over the last (.+?)\)", result.stdout))
    assert uptime is not None and len(windows) == 1, result.stdout
    # Younger than the 10 s rate window, the window is its whole life: the same words.
    assert windows == {uptime.group(1)} or windows == {"10 s"}, result.stdout


# With no daemon: starts a run, waits until its events went to a spool file (which then names the
# run as owned), ends the run (the end goes to the spool too) and prints the run id.
SPOOLS_THEN_ENDS = """
import os, sys, time, trackd
spool = sys.argv[1]
with trackd.start_run() as run:
    trackd.log_metric("x", 1.0)
    while not (os.path.isdir(spool) and any(name.endswith(".spool") for name in os.listdir(spool))):
        time.sleep(0.02)
    trackd.log_metric("x", 2.0, step=1)
print(run.info.run_id, flush=True)
"""


def test_the_daemon_does_not_say_a_run_whose_end_its_spool_holds_was_not_ended(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # The spool named the run as owned, then held its end: the daemon logged "Spool ... names runs
    # R its process P had not ended: marked FAILED if they are RUNNING", and wrote it FINISHED.
    spool_dir = tmp_path / "spool"
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="1",
    )
    child = subprocess.run([sys.executable, "-c", SPOOLS_THEN_ENDS, str(spool_dir)], env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    run_id = child.stdout.split()[-1]
    daemon = DaemonProcess(socket_path).start()
    try:
        assert _sync(socket_path, spool_dir).returncode == 0
        wait_for(lambda: f"its runs {run_id} are not RUNNING in the store" in daemon.log(), 30, message="the will's check")
    finally:
        assert daemon.stop() == 0, daemon.log()
    named = [line for line in daemon.log().splitlines() if f"names runs {run_id}" in line]
    assert len(named) == 1 and "had not ended" not in named[0] and "checked once that process has exited" in named[0], named
    assert MlflowClient(tracking_uri=str(store)).get_run(run_id).info.status == "FINISHED"


def test_a_sync_connections_close_line_counts_what_it_delivered(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # The spool's client had sent 4 events on its own connection before the daemon lost it; `trackd
    # sync`, delivering 3 more, closed with "4 + 3 = 7 events received from it": its client's since
    # its first connection, not this connection's.
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store), client_id="replayed"), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(RUN_ID), *metric_records(RUN_ID, "early", 3)]))
        assert raw.replies_until_ack(1) == []
    finally:
        raw.close()
    wait_for(lambda: "4 events received from it" in daemon.log(), 20, message="the first connection's close line")
    spool_dir = tmp_path / "spool"
    path = _spool_of_a_gone_process(spool_dir, store, client_id="replayed")
    with path.open("ab") as spool:
        spool.write(encode_frame(Batch(seq=2, records=metric_records(RUN_ID, "late", 3))))
    result = _sync(daemon.paths.socket, spool_dir)
    assert result.returncode == 0 and "delivered 3 events (1 batch) of client replayed; the store had 4 events" in result.stdout, result.stdout
    wait_for(lambda: daemon.log().count(" disconnected: ") == 2, 20, message="the sync connection's close line")
    closed = [line for line in daemon.log().splitlines() if " disconnected: " in line]
    assert "3 events received from it on this connection (7 from its client in all)" in closed[1], closed
