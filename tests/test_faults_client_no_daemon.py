"""No daemon takes a process's events in time (none runs, autostart is off, it is at its connection
limit, or exit gives it 0 s): the process neither waits nor spins for nothing, and says once where
its events went, in words that fit their count.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, short_socket_path, spooled_events

from trackd.protocol import Welcome
from trackd.store import StoreReader


def test_the_sender_thread_does_not_spin_while_no_daemon_answers(tmp_path: Path) -> None:
    # A poke (here: a flush) left the wake pipe readable, and every later backoff returned at
    # once: the thread used a whole core for as long as no daemon answered.
    env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"),
                    TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_CONNECT_TIMEOUT="60", TRACKD_EXIT_TIMEOUT="0")
    code = """
import json, resource, time, trackd
client = trackd.Client()
run_id = client.create_run().info.run_id
client.log_metric(run_id, "x", 1.0)
try:
    client.flush(timeout=0.2)
except trackd.FlushTimeout:
    pass
before = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(2.0)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}))
"""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    cpu = json.loads(result.stdout.strip().splitlines()[-1])["cpu"]
    # Backing off from 0.05 s to 2 s, a few attempts; spinning used ~2 s of the 2 s.
    assert cpu < 0.5, f"the process used {cpu:.2f} s of CPU while idle for 2 s"


# Logs two points in a run, flushes if argv[1] says so, then exits: with no daemon, the run's
# creation, the points and its end are 4 events.
NO_DAEMON_EXIT = """
import sys, time, trackd
trackd.start_run()
trackd.log_metric("a", 1.0)
trackd.log_metric("b", 2.0)
if sys.argv[1] == "flush":
    try:
        trackd.flush()
    except trackd.DaemonUnavailable:
        print("flush raised", flush=True)
print("exiting", time.time(), flush=True)
"""


def _run_without_daemon(tmp_path: Path, spool: Path, flush: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    env = child_env(
        tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"),
        TRACKD_SPOOL_DIR=str(spool), TRACKD_CONNECT_TIMEOUT="1", TRACKD_EXIT_TIMEOUT="10",
    )
    result = subprocess.run([sys.executable, "-c", NO_DAEMON_EXIT, "flush" if flush else "no"],
                            env=env, capture_output=True, text=True, timeout=60)
    exit_began = float(result.stdout.split("exiting")[-1].split()[0])
    return result, time.time() - exit_began


@pytest.mark.parametrize("flush", [True, False], ids=["after-a-failed-flush", "without-a-flush"])
def test_exit_that_can_neither_deliver_nor_spool_says_once_how_many_events_it_loses(tmp_path: Path, flush: bool) -> None:
    # After a flush() that raised, exit said twice "3 events are held in memory and sent when a
    # daemon answers": nothing would send them, the process was exiting.
    spool = tmp_path / "spool"
    spool.write_text("a file where the spool folder should be")
    result, _ = _run_without_daemon(tmp_path, spool, flush)
    assert result.returncode == 0, result.stderr
    assert ("flush raised" in result.stdout) is flush
    # The sender thread's "holding 3 events in memory, lost if this process exits ..." is not a loss.
    lost = [line for line in result.stderr.splitlines() if re.search(r"events? (?:are|is) lost", line)]
    assert len(lost) == 1, result.stderr
    assert lost[0].startswith(f"trackd: 4 events are lost: no daemon answers at {tmp_path / 'none.sock'}")
    assert f"and they could not be spooled to {spool}/" in lost[0]
    assert "sent when a daemon answers" not in result.stderr


@pytest.mark.parametrize("spool_writable", [True, False], ids=["spooled", "unspoolable"])
def test_exit_with_no_daemon_and_autostart_off_does_not_wait_for_one(tmp_path: Path, spool_writable: bool) -> None:
    # With TRACKD_AUTOSTART=0 and no daemon, exit waited the whole TRACKD_EXIT_TIMEOUT (10 s) for a
    # daemon nothing would start, and printed three or four lines.
    spool = tmp_path / "spool"
    if not spool_writable:
        spool.write_text("a file where the spool folder should be")
    result, exit_took = _run_without_daemon(tmp_path, spool, flush=False)
    assert result.returncode == 0, result.stderr
    assert exit_took < 5, f"exit took {exit_took:.1f} s:\n{result.stderr}"  # not a timing target: it took 10 s
    lines = result.stderr.splitlines()
    # Only the line that says where the events went: the sender's "Holding 4 events and retrying"
    # came first, of a process that was exiting (see test_outage_lines.py).
    assert len(lines) == 1, result.stderr
    reason = f"no daemon answers at {tmp_path / 'none.sock'} and TRACKD_AUTOSTART=0 starts none"
    if spool_writable:
        assert lines[0].startswith(f"trackd: 4 events were not delivered: {reason}; they are spooled to {spool}/"), lines[0]
        assert spooled_events(spool) == 4
    else:
        assert lines[0].startswith(f"trackd: 4 events are lost: {reason}, and they could not be spooled"), lines[0]


def test_exit_waits_for_a_daemon_that_is_there_but_refuses_for_now(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # A daemon at its connection limit (or busy in the handshake, or still starting) counted as
    # "none answers": exit spooled at once and said no daemon answered, though waiting delivered.
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    try:
        holder = RawClient(socket_path)
        assert isinstance(holder.hello(str(store)), Welcome)
        threading.Timer(3.0, holder.close).start()  # the one slot is free again in 3 s
        env = child_env(
            socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store),
            TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_EXIT_TIMEOUT="20",
        )
        result = subprocess.run([sys.executable, "-c", NO_DAEMON_EXIT, "no"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "no daemon answers" not in result.stderr and "lost" not in result.stderr, result.stderr
        [run] = StoreReader(store).search_runs(["0"])
        assert run.info.status == "FINISHED" and run.data.metrics == {"a": 1.0, "b": 2.0}
    finally:
        assert daemon.stop() == 0


MONITOR_WITHOUT_DAEMON = """
import itertools, os, signal, sys, threading, time, trackd
def monitor():  # a system-metrics thread, logging through exit as fast as it can
    for step in itertools.count():
        trackd.log_metric("sys/cpu", float(step), step=step)
        time.sleep(0.0001)
trackd.start_run()
threading.Thread(target=monitor, daemon=True).start()
time.sleep(0.2)
if sys.argv[1] == "SIGTERM":
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""


@pytest.mark.parametrize("ending", ["exit", "SIGTERM"])
def test_a_thread_logging_through_exit_without_a_daemon_has_its_points_spooled_not_called_lost(
    tmp_path: Path, ending: str
) -> None:
    # With no daemon, exit said "1 event is lost: ... they could not be moved to the spool file in
    # time" in about one exit of two: it counted what the monitor logged after the spill as lost,
    # though the close's final drain spooled it a moment later (the spool was fine).
    socket_path = short_socket_path()
    spool = tmp_path / "spool"
    for attempt in range(6):
        store = tmp_path / f"mlruns{attempt}"
        env = child_env(
            socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool),
        )
        result = subprocess.run([sys.executable, "-c", MONITOR_WITHOUT_DAEMON, ending], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == (0 if ending == "exit" else -signal.SIGTERM), result.stderr
        assert " lost" not in result.stderr, result.stderr
    daemon = DaemonProcess(socket_path).start()
    try:
        sync = subprocess.run([sys.executable, "-m", "trackd", "sync", "--socket", str(socket_path), "--spool-dir", str(spool)],
                              capture_output=True, text=True, timeout=120)
        assert sync.returncode == 0, sync.stderr
        for attempt in range(6):
            [run] = StoreReader(tmp_path / f"mlruns{attempt}").search_runs(["0"])
            steps = sorted(m.step for m in StoreReader(tmp_path / f"mlruns{attempt}").get_metric_history(run.info.run_id, "sys/cpu"))
            assert steps == list(range(len(steps))), f"attempt {attempt}: a gap in the monitor's points"
    finally:
        assert daemon.stop() == 0


def test_an_exit_timeout_of_0_spools_without_blaming_a_healthy_daemon(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # TRACKD_EXIT_TIMEOUT=0 spools at exit, as documented, but the line said "the daemon at ...
    # did not answer within 0 s" of a daemon that was never given time to answer.
    spool = tmp_path / "spool"
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool), TRACKD_EXIT_TIMEOUT="0")
    code = "import trackd\nwith trackd.start_run():\n    trackd.log_metric('a', 1.0)\n"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "did not answer" not in result.stderr and "TRACKD_EXIT_TIMEOUT=0" in result.stderr, result.stderr
    assert spooled_events(spool) == 3  # the run's creation, its point and its end


ONE_EVENT = """
import sys, trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
if sys.argv[1] == "flushed":
    client.flush()
    client.log_metric(run_id, "a", 1.0)
client.close()
"""


@pytest.mark.parametrize("case", ["spooled", "lost"])
def test_a_line_about_one_event_says_it_not_they(daemon: DaemonProcess, store: Path, tmp_path: Path, case: str) -> None:
    # "1 event was not delivered: ...; they are spooled to ..." and "1 event is lost: ..., and they could not".
    spool = tmp_path / "spool"
    if case == "spooled":  # the daemon answers; a timeout of 0 spools the one event logged after the flush
        env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool), TRACKD_EXIT_TIMEOUT="0")
    else:  # no daemon, and a file where the spool folder should be: the run's creation is lost
        spool.write_text("not a folder")
        env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool))
    result = subprocess.run([sys.executable, "-c", ONE_EVENT, "flushed" if case == "spooled" else "no"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("trackd: 1 event ")]
    assert "they " not in line and (" it is spooled to " in line if case == "spooled" else ", and it could not be spooled to " in line), line
