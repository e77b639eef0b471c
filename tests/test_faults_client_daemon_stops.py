"""The daemon stops answering a process (SIGSTOP, a restart, SIGKILL): what the process cannot deliver
in time is spooled, said once, and written to the store once, by `trackd sync`, the process itself
or the daemon that answers next.

Each producer is a real process; the test stops, kills or restarts the daemon from outside, then
reads the producer's stderr and counts every point in ./mlruns.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, spooled_events, steps_in_store, wait_for

from trackd._paths import DaemonPaths
from trackd.store import StoreReader


# Logs argv[1] points to a new run and prints "logged <time.time()>"; then exits, or (argv[3] ==
# "SIGTERM") sleeps until the test sends SIGTERM. With argv[2] == "mid-stream" it first delivers
# one point, so it is connected when the test stops the daemon, and goes on once file argv[4] exists.
# The start of the children below: a new run, and how to deliver its point 0, say "connected"
# and wait for file ``go``, so the test can stop the daemon once the child is connected.
RUN_THEN_CONNECT = """
import os, sys, time, trackd
run = trackd.start_run()
print("run", run.info.run_id, flush=True)

def connect_then_wait(go):
    trackd.log_metric("x", 0.0, step=0)
    trackd.flush(timeout=30)
    print("connected", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
"""

STALL_AT_EXIT = RUN_THEN_CONNECT + """
points, stall, ending, go = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
first = 0
if stall == "mid-stream":
    connect_then_wait(go)
    first = 1
for step in range(first, points):
    trackd.log_metric("x", float(step), step=step)
print("logged", time.time(), flush=True)
if ending == "SIGTERM":
    time.sleep(120)
"""

EXIT_TIMEOUT = 2.0


def _line(child: Child, word: str) -> list[str] | None:
    return next((line.split() for line in list(child.out) if line.startswith(word + " ")), None)


def _sync(daemon: DaemonProcess, spool_dir: Path) -> None:
    """`trackd sync` of ``spool_dir`` into ``daemon``, then wait until the daemon wrote it all."""
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 10, message="the daemon's backlog written")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["exit", "SIGTERM"])
@pytest.mark.parametrize(
    ("stall", "points"),
    # Before connecting, everything waits in the buffer (at most 25,000 events); mid-stream, the
    # sender's send blocks once the socket is full (~200 KB, about one 10,000-point batch).
    [("before-connecting", 10_000), ("mid-stream", 30_000)],
)
def test_exit_with_a_stopped_daemon_is_bounded_warns_once_and_spools_every_event(
    stall: str, points: int, ending: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to take 2 x TRACKD_EXIT_TIMEOUT + 5 s (9 s here), print each warning twice, and
    # spool nothing: the sender thread sat in a handshake, or a send, that the stopped daemon never
    # answered, so close() gave up on joining it and the events died with the process.
    spool_dir, go = tmp_path / "spool", tmp_path / "go"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
        TRACKD_EXIT_TIMEOUT=str(EXIT_TIMEOUT), TRACKD_AUTOSTART="0",
    )
    # The run's creation and termination travel with the points; mid-stream, point 0 and the
    # creation were delivered before the stall.
    undelivered = points + 2 if stall == "before-connecting" else points
    if stall == "before-connecting":
        daemon.signal(signal.SIGSTOP)
    try:
        with Child(STALL_AT_EXIT, [str(points), stall, ending, str(go)], env) as child:
            if stall == "mid-stream":
                wait_for(lambda: "connected" in child.out or child.process.poll() is not None, 30, message="point 0")
                daemon.signal(signal.SIGSTOP)
                go.touch()
            wait_for(lambda: _line(child, "logged") is not None or child.process.poll() is not None, 60, message="the points")
            logged = _line(child, "logged")
            assert logged is not None, child.stderr()
            exit_began = float(logged[1])
            if ending == "SIGTERM":
                exit_began = time.time()
                child.process.send_signal(signal.SIGTERM)
            code = child.wait(timeout=60)
            exit_took = time.time() - exit_began
        assert code == (0 if ending == "exit" else -signal.SIGTERM), child.stderr()
        # About EXIT_TIMEOUT plus the spool's write; the margin is for a loaded 2-core machine.
        assert exit_took < EXIT_TIMEOUT + 5, f"exit took {exit_took:.1f} s:\n{child.stderr()}"
        # One line after 1 s, one when the wait runs out; closing the client after ending the run
        # used to repeat both.
        waiting = [line for line in child.err if "waiting up to" in line]
        given_up = [line for line in child.err if "were not delivered" in line]
        assert len(waiting) == 1 and len(given_up) == 1, child.stderr()
        assert f"{undelivered} events were not delivered" in given_up[0] and "spooled to" in given_up[0]
        assert spooled_events(spool_dir) == undelivered
    finally:
        daemon.signal(signal.SIGCONT)
    run = _line(child, "run")
    assert run is not None
    run_id = run[1]
    _sync(daemon, spool_dir)
    # Mid-stream, the resumed daemon also reads what the dropped connection left in its socket:
    # it skips those batches in the spool by their sequence numbers, so each point is written once.
    assert steps_in_store(store, run_id) == list(range(points)), "points lost, duplicated or out of order"
    assert StoreReader(store).get_run(run_id).info.status == ("FINISHED" if ending == "exit" else "KILLED")


# Logs argv[1] points through a Client, then says "closing" and ends it by argv[2]: "close()", or
# "exit" with the Client dropped (as code making an MlflowClient per call leaves it).
CLOSE_THEN_WAIT = """
import sys, trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
print("run", run_id, flush=True)
for step in range(int(sys.argv[1])):
    client.log_metric(run_id, "x", float(step), None, step)
print("closing", flush=True)
if sys.argv[2] == "close()":
    client.close()
else:
    del client
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["close()", "exit"])
def test_sigterm_while_closing_for_a_stopped_daemon_spools_every_event(
    ending: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to kill the process at once, with nothing spooled and nothing said: the close had
    # taken its sender out of the ones the SIGTERM handler delivers, so the handler found none and
    # re-raised the signal. Found by chaos testing (a producer SIGTERMed while it closed).
    points, spool_dir = 10_000, tmp_path / "spool"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
        TRACKD_EXIT_TIMEOUT=str(EXIT_TIMEOUT), TRACKD_AUTOSTART="0",
    )
    daemon.signal(signal.SIGSTOP)
    try:
        with Child(CLOSE_THEN_WAIT, [str(points), ending], env) as child:
            wait_for(lambda: "closing" in child.out or child.process.poll() is not None, 60, message="the points")
            time.sleep(EXIT_TIMEOUT / 4)  # well inside the close's wait for the daemon
            child.process.send_signal(signal.SIGTERM)
            code = child.wait(timeout=60)
        assert code == -signal.SIGTERM, child.stderr()
        given_up = [line for line in child.err if "were not delivered" in line]
        assert len(given_up) == 1 and f"{points + 1} events were not delivered" in given_up[0], child.stderr()
        assert spooled_events(spool_dir) == points + 1  # the run's creation, and every point
    finally:
        daemon.signal(signal.SIGCONT)
    run = _line(child, "run")
    assert run is not None
    _sync(daemon, spool_dir)
    assert steps_in_store(store, run[1]) == list(range(points))


# Delivers point 0, waits for file argv[1], then logs until it is killed: with the daemon stopped,
# the buffer fills and log_metric waits for room (TRACKD_ON_FULL=block) when SIGTERM comes.
LOG_UNTIL_KILLED = RUN_THEN_CONNECT + """
connect_then_wait(sys.argv[1])
step = 1
while True:
    trackd.log_metric("x", float(step), step=step)
    step += 1
"""


@pytest.mark.timeout(120)
def test_sigterm_while_a_logging_call_waits_for_room_ends_the_run_and_spools(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This hung until SIGKILL: the handler's end_run queued the run's termination, which waited
    # for room in the full buffer like a point, and the stopped daemon never made any.
    spool_dir, go = tmp_path / "spool", tmp_path / "go"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
        TRACKD_EXIT_TIMEOUT=str(EXIT_TIMEOUT), TRACKD_AUTOSTART="0",
    )
    try:
        with Child(LOG_UNTIL_KILLED, [str(go)], env) as child:
            wait_for(lambda: "connected" in child.out or child.process.poll() is not None, 30, message="point 0")
            daemon.signal(signal.SIGSTOP)
            go.touch()
            wait_for(lambda: any("buffer is full" in line for line in child.err), 60, message="a full buffer")
            time.sleep(0.2)
            began = time.time()
            child.process.send_signal(signal.SIGTERM)
            code = child.wait(timeout=60)
            took = time.time() - began
        assert code == -signal.SIGTERM, child.stderr()
        assert took < EXIT_TIMEOUT + 5, f"exit took {took:.1f} s:\n{child.stderr()}"
        assert any("spooled to" in line for line in child.err), child.stderr()
    finally:
        daemon.signal(signal.SIGCONT)
    run = _line(child, "run")
    assert run is not None
    _sync(daemon, spool_dir)
    steps = steps_in_store(store, run[1])
    # Every point a call accepted, once and in order; the run ended KILLED.
    assert len(steps) > 1000 and steps == list(range(len(steps))), "points lost, duplicated or out of order"
    assert StoreReader(store).get_run(run[1]).info.status == "KILLED"


# Delivers point 0, waits for file argv[1], then logs argv[2] more points and flushes.
LOG_THEN_FLUSH = RUN_THEN_CONNECT + """
connect_then_wait(sys.argv[1])
for step in range(1, int(sys.argv[2])):
    trackd.log_metric("x", float(step), step=step)
trackd.flush(timeout=60)
"""


# Logs point 0 to a run of its own, waits for file argv[1], then logs argv[3] points and
# flushes; touches file argv[2] once its buffer and its window are full (a daemon that does not
# read). The window (2,000 events) fills before the socket does: the sender never waits in a send
# with a chunk taken from the buffer, so from then on a full buffer stays full until the
# connection breaks. A full buffer alone is not that: on a loaded machine the logging thread
# filled it before the sender thread took its first batch, the test killed the daemon, and the
# sender had moved the buffer into the window meanwhile (held for the successor, never spooled).
FILL_THEN_FLUSH = """
import os, sys, threading, time, trackd
go, full, points = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = trackd.ClientConfig.from_env()
config.max_unacked_events = 2000
with trackd.Client(os.environ["TRACKD_TRACKING_URI"], config=config) as client:
    run_id = client.create_run("0").info.run_id
    client.log_metric(run_id, "x", 0.0, step=0)
    client.flush(timeout=30)
    print("run", run_id, flush=True)

    def watch():
        sender = client._sender
        while True:
            stats = sender.stats()
            if stats["buffered"] >= sender.config.max_buffered and stats["unacked_events"] >= config.max_unacked_events:
                break
            time.sleep(0.01)
        open(full, "w").close()

    threading.Thread(target=watch, daemon=True).start()
    while not os.path.exists(go):
        time.sleep(0.01)
    for step in range(1, points):
        client.log_metric(run_id, "x", float(step), step=step)
    client.flush(timeout=60)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_events_spooled_as_the_daemon_stops_and_taken_by_the_successor_the_process_started_are_not_an_outage(
    paths: DaemonPaths, store: Path, tmp_path: Path, stop: str
) -> None:
    # A process whose connection broke mid-send with a full buffer spooled and said "no daemon
    # answers at ...; N events spooled to ...", then started the next daemon itself, which took
    # them a moment later ("reconnected"): a false alarm. Only a failed attempt to reach the
    # successor is an outage worth a line (the test below has one).
    go, full, points = tmp_path / "go", tmp_path / "full", 30_000
    spool_dir = tmp_path / "spool"
    env = child_env(
        paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="1",
        TRACKD_MAX_BUFFERED="1000", TRACKD_ON_FULL="block",
    )
    first = DaemonProcess(paths.socket).start()
    with Child(FILL_THEN_FLUSH, [str(go), str(full), str(points)], env) as child:
        wait_for(lambda: _line(child, "run") is not None or child.process.poll() is not None, 30, message="point 0")
        first.signal(signal.SIGSTOP)  # reads nothing more: the window, the socket, then the buffer fill up
        go.touch()
        wait_for(lambda: full.exists() or child.process.poll() is not None, 60, message="the child's buffer to fill")
        if stop == "sigkill":
            first.kill()  # never reads again: the buffer is full at the break, so it is spooled
        else:
            first.signal(signal.SIGTERM)
            first.signal(signal.SIGCONT)  # stops reading, writes what it read, closes the connection
            assert first.stop() == 0, first.log()
        code = child.wait(timeout=90)
    assert code == 0, child.stderr()
    if stop == "sigkill":
        assert spool_dir.is_dir(), "nothing was spooled (the folder is made by the first spill)\n" + child.stderr() + "\n".join(child.out)
    assert not [line for line in child.err if "spooled" in line or "no daemon answers" in line], child.stderr()
    assert paths.pid.exists() and int(paths.pid.read_text()) != first.pid  # the successor, started by the child
    run = _line(child, "run")
    assert run is not None
    assert steps_in_store(store, run[1]) == list(range(points)), "points lost, duplicated or out of order"
    assert list(spool_dir.glob("*.spool")) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("restart", ["by-hand", "killed"])
def test_events_spooled_during_a_restart_are_said_to_go_to_the_daemon_that_answers(
    socket_path: Path, store: Path, tmp_path: Path, restart: str
) -> None:
    # The line that says events went to the spool file ("... delivered when a daemon answers, or
    # by `trackd sync`") must not be the last word on them once a daemon answers: the reconnect
    # says they are resent. (A process that starts the next daemon itself took another path, with
    # no reconnect line, when its connection broke mid-send; that depends on timing and was checked
    # by hand: 4 restarts of a 3M-point producer, each now with both lines.)
    go, points = tmp_path / "go", 5_000
    env = child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_AUTOSTART="0",
        TRACKD_MAX_BUFFERED="1000", TRACKD_ON_FULL="block",
    )
    first = DaemonProcess(socket_path).start()
    with Child(LOG_THEN_FLUSH, [str(go), str(points)], env) as child:
        wait_for(lambda: "connected" in child.out or child.process.poll() is not None, 30, message="point 0")
        if restart == "killed":
            first.kill()
        else:
            assert first.stop() == 0, first.log()
        go.touch()
        wait_for(lambda: any("spooled to" in line for line in child.err) or child.process.poll() is not None, 30, message="a spill")
        second = DaemonProcess(socket_path).start()
        try:
            code = child.wait(timeout=60)
        finally:
            assert second.stop() == 0, second.log()
    assert code == 0, child.stderr()
    lines = [line for line in child.err if "spooled" in line]
    assert len(lines) == 2 and "no daemon answers" in lines[0], child.stderr()
    # Events first, as the spill's line counted them (it said "resending 5 spooled and 0 unacknowledged batches").
    resent = re.match(rf"trackd: reconnected to the daemon at {re.escape(str(socket_path))}; resending (\d+) spooled events \(\d+ batch", lines[1])
    assert resent is not None and int(resent[1]) >= 1000, child.stderr()
    run = _line(child, "run")
    assert run is not None
    assert steps_in_store(store, run[1]) == list(range(points)), "points lost, duplicated or out of order"


@pytest.mark.timeout(120)
def test_a_full_buffer_while_no_daemon_answers_says_so_not_that_the_daemon_is_slow(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # The daemon was SIGKILLed and no other is answering yet (a restart; here the spool cannot take
    # the events either, so they wait in memory): the line said the daemon "is not keeping up",
    # and users went looking at a daemon that was not there.
    spool_file = tmp_path / "spool"
    spool_file.write_text("not a directory")
    go, points = tmp_path / "go", 5_000
    env = child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_file), TRACKD_AUTOSTART="0",
        TRACKD_MAX_BUFFERED="1000", TRACKD_ON_FULL="block",
    )
    first = DaemonProcess(socket_path).start()
    with Child(LOG_THEN_FLUSH, [str(go), str(points)], env) as child:
        wait_for(lambda: "connected" in child.out or child.process.poll() is not None, 30, message="point 0")
        first.kill()
        go.touch()
        wait_for(lambda: any("buffer is full" in line for line in child.err) or child.process.poll() is not None, 30, message="a full buffer")
        second = DaemonProcess(socket_path).start()
        try:
            code = child.wait(timeout=60)
        finally:
            assert second.stop() == 0, second.log()
    assert code == 0, child.stderr()
    [full] = [line for line in child.err if "buffer is full" in line]
    assert f"no daemon answers at {socket_path}" in full and "not keeping up" not in full, full
    run = _line(child, "run")
    assert run is not None
    assert steps_in_store(store, run[1]) == list(range(points)), "points lost, duplicated or out of order"


def test_clients_closing_one_after_another_at_a_stalled_daemon_say_so_twice_not_each_time(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Each sibling Client's close() used to print its own "N more events were not delivered" line.
    spool_dir = tmp_path / "spool"
    env = child_env(daemon.paths.socket, TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_EXIT_TIMEOUT="1", TRACKD_AUTOSTART="0")
    code = f"""
import os, signal, sys, trackd
main = trackd.Client({str(store)!r})
run_id = main.create_run().info.run_id
main.flush()
print("run", run_id, flush=True)
os.kill({daemon.pid}, signal.SIGSTOP)
try:
    for step in range(10):
        main.log_metric(run_id, "loss", float(step), step=step)
        with trackd.Client({str(store)!r}) as side:  # a callback that makes a client per call
            side.set_tag(run_id, "epoch", str(step))
finally:
    os.kill({daemon.pid}, signal.SIGCONT)
main.close()
"""
    try:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        daemon.signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "were not delivered" in line]
    # The first give-up, and the total of the quiet ones when the last client closes; or none at
    # that close if the process reconnected first: its attempt waits in the stopped daemon's queue
    # and is answered the moment the daemon resumes, before main.close(), which then delivers.
    reconnected = any(line.startswith("trackd: reconnected to the daemon at") for line in result.stderr.splitlines())
    assert len(lines) == 2 and "more events" in lines[1] or len(lines) == 1 and reconnected, result.stderr
    _sync(daemon, spool_dir)
    run_id = result.stdout.split()[1]
    assert steps_in_store(store, run_id, "loss") == list(range(10))
    assert StoreReader(store).get_run(run_id).data.tags["epoch"] == "9"


def test_a_process_that_gave_a_stalled_daemon_up_delivers_its_spool_itself_once_it_answers(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # end_run() ran out of time at a stopped daemon and spooled the run; the process goes on, the
    # daemon resumes, and the next flush delivers the spooled events first: no `trackd sync`.
    spool_dir = tmp_path / "spool"
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
                    TRACKD_EXIT_TIMEOUT="1", TRACKD_AUTOSTART="0")
    code = f"""
import os, signal, trackd
first = trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.flush(timeout=30)
os.kill({daemon.pid}, signal.SIGSTOP)
try:
    for step in range(1, 5000):
        trackd.log_metric("x", float(step), step=step)
    trackd.end_run()  # gives the stopped daemon up after 1 s: spooled
    print("spooled", len(os.listdir({str(spool_dir)!r})), flush=True)
finally:
    os.kill({daemon.pid}, signal.SIGCONT)
with trackd.start_run() as second:
    trackd.log_metric("y", 1.0)
trackd.flush(timeout=30)
print("runs", first.info.run_id, second.info.run_id, flush=True)
"""
    try:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        daemon.signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert lines["spooled"] == ["1"], result.stderr
    first_id, second_id = lines["runs"]
    assert steps_in_store(store, first_id) == list(range(5000)), "points lost, duplicated or out of order"
    reader = StoreReader(store)
    assert reader.get_run(first_id).info.status == "FINISHED"
    assert reader.get_run(second_id).data.metrics == {"y": 1.0}


def test_closing_the_last_client_at_a_stalled_daemon_does_not_promise_a_later_count(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The close's one line used to end "Until then, what follows is spooled there too, counted
    # when this process closes its clients": said by that close, of a count that never came.
    spool_dir = tmp_path / "spool"
    env = child_env(daemon.paths.socket, TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_EXIT_TIMEOUT="1", TRACKD_AUTOSTART="0")
    code = f"""
import os, signal, trackd
client = trackd.Client({str(store)!r})
run_id = client.create_run().info.run_id
client.flush()
os.kill({daemon.pid}, signal.SIGSTOP)
client.log_metric(run_id, "loss", 0.5, step=0)
client.close()
"""
    try:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        daemon.signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "not delivered" in line]
    assert line.startswith("trackd: 1 event was not delivered") and "spooled to" in line
    assert "what follows" not in line, result.stderr
    _sync(daemon, spool_dir)
