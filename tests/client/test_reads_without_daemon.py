"""Reads of runs go on without a daemon: they read the store as it is and say once what they may miss.

A read flushes what its process logged first, so the process reads its own writes. Once the process
had logged something no daemon took (the daemon stopped with SIGSTOP, or gone with TRACKD_AUTOSTART=0),
``get_run`` raised FlushTimeout after TRACKD_CONNECT_TIMEOUT, then DaemonUnavailable at once, on every
read, where MLflow's FileStore reads the files with no daemon at all. Each test runs a real child
against a real daemon, stops that daemon (SIGSTOP) or stops it for good, and reads the store back with MLflow afterwards:
every point is there once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env
from mlflow import MlflowClient

# Logs step 0 and flushes it, has the daemon stopped (SIGSTOP of argv[2]) or stopped for good
# (`trackd daemon stop`), logs step 1, and reads the run back READS times each way. Then, with a
# SIGSTOPped daemon resumed (SIGCONT), flushes, logs step 2 and reads it back at once.
CHILD = """
import json, os, signal, subprocess, sys, trackd
how, daemon_pid, reads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = trackd.Client(sys.argv[4])
run_id = client.create_run("0").info.run_id
client.log_metric(run_id, "x", 0.0, step=0)
client.flush(timeout=30)
if how == "sigstop":
    os.kill(daemon_pid, signal.SIGSTOP)
else:
    subprocess.run([sys.executable, "-m", "trackd", "daemon", "stop"], check=True, capture_output=True)
client.log_metric(run_id, "x", 1.0, step=1)
seen = []
for _ in range(reads):
    seen.append(sorted(client.get_run(run_id).data.metrics.items()))
    seen.append([m.step for m in client.get_metric_history(run_id, "x")])
    seen.append([run.info.run_id for run in client.search_runs(["0"])])
    seen.append([info.path for info in client.list_artifacts(run_id)])
after = None
if how == "sigstop":
    os.kill(daemon_pid, signal.SIGCONT)
    client.flush(timeout=30)  # the daemon answers again: the spool is resent
    client.log_metric(run_id, "x", 2.0, step=2)
    after = [m.step for m in client.get_metric_history(run_id, "x")]
print(json.dumps({"run_id": run_id, "seen": seen, "after": after}))
"""

# Enough reads that waiting TRACKD_CONNECT_TIMEOUT (5 s) in each would outlast the child's 60 s.
READS = 15


def run_child(how: str, daemon: DaemonProcess, store: Path, spool: Path) -> tuple[dict[str, object], str]:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="5", TRACKD_SPOOL_DIR=str(spool))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, how, str(daemon.pid), str(READS), str(store)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def warnings_of_reads(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "as it is, and may miss" in line]


def test_reads_of_a_process_whose_daemon_is_stopped_read_the_store_and_warn_once(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # This used to raise FlushTimeout ("The trackd daemon answered nothing for 5 s; 1 event is
    # still on the way to the store") at the first read, and at every read after it.
    daemon = DaemonProcess(socket_path).start()
    try:
        out, stderr = run_child("sigstop", daemon, store, tmp_path / "spool")
    finally:
        daemon.signal(signal.SIGCONT)
        assert daemon.stop() == 0, daemon.log()
    run_id = out["run_id"]
    seen = out["seen"]
    assert isinstance(seen, list)
    assert seen[:4] == [[["x", 0.0]], [0], [run_id], []]  # the store as it is: step 1 is not in it yet
    assert seen == seen[:4] * READS
    (line,) = warnings_of_reads(stderr)
    assert line.startswith(f"trackd: get_run reads {store} as it is, and may miss 1 event this process logged"), line
    assert "spooled to" in line and "answered nothing for 5 s while get_run waited" in line, line
    assert out["after"] == [0, 1, 2]  # the daemon answers again: the process reads its own writes
    history = MlflowClient(tracking_uri=str(store)).get_metric_history(str(run_id), "x")
    assert sorted(m.step for m in history) == [0, 1, 2]


def test_reads_of_a_process_whose_daemon_is_gone_read_the_store_and_its_points_are_delivered_later(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # This used to raise FlushTimeout after TRACKD_CONNECT_TIMEOUT, then DaemonUnavailable ("No
    # trackd daemon answers at ...; 1 event is spooled to ...") at once, at every read.
    spool = tmp_path / "spool"
    daemon = DaemonProcess(socket_path).start()
    try:
        out, stderr = run_child("stop", daemon, store, spool)
    finally:
        daemon.stop()
    run_id = out["run_id"]
    seen = out["seen"]
    assert isinstance(seen, list) and seen == [[["x", 0.0]], [0], [run_id], []] * READS
    (line,) = warnings_of_reads(stderr)
    assert "may miss 1 event" in line and "TRACKD_AUTOSTART=0 starts none" in line, line
    daemon = DaemonProcess(socket_path).start()
    try:
        env = child_env(socket_path, TRACKD_SPOOL_DIR=str(spool), TRACKD_AUTOSTART="0")
        sync = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert sync.returncode == 0, sync.stderr
    finally:
        assert daemon.stop() == 0, daemon.log()
    history = MlflowClient(tracking_uri=str(store)).get_metric_history(str(run_id), "x")
    assert [m.step for m in history] == [0, 1]


def test_a_read_with_a_daemon_that_answers_reads_its_own_writes_and_says_nothing(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    code = """
import sys, trackd
client = trackd.Client(sys.argv[1])
run_id = client.create_run("0").info.run_id
for step in range(100):
    client.log_metric(run_id, "x", float(step), step=step)
    assert [m.step for m in client.get_metric_history(run_id, "x")] == list(range(step + 1))
"""
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(tmp_path / "spool"))
    result = subprocess.run([sys.executable, "-c", code, str(store)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
