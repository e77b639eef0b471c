"""``trackd daemon start|stop|status`` in real processes, on a short private socket."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SOCKET_PARENT, RawClient, alive, create_run_record, metric_lines, metric_records, inherited_env, wait_for

from trackd._paths import DaemonPaths
from trackd._status_text import byte_size, duration
from trackd.client._control import query_status
from trackd.client._launcher import MAX_ENDED_STARTS
from trackd.errors import DaemonUnavailable
from trackd.protocol import Ack, Batch, ErrorCode, ErrorReply, Welcome

pytestmark = pytest.mark.timeout(60)


def trackd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trackd.cli ARGS`` and return its result."""
    return subprocess.run([sys.executable, "-m", "trackd.cli", *args], capture_output=True, text=True, timeout=45)




def start(paths: DaemonPaths) -> int:
    """``trackd daemon start`` and the pid it printed."""
    result = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert result.returncode == 0, result.stderr
    match = re.search(r"pid (\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def test_start_detaches_and_prints_the_pid_from_its_pid_file(paths: DaemonPaths) -> None:
    pid = start(paths)
    # The command has returned; the daemon lives on in its own session, logging to its log file.
    assert alive(pid) and os.getsid(pid) == pid
    assert paths.pid.read_text().strip() == str(pid)
    assert query_status(paths.socket)["pid"] == pid
    assert f"daemon pid {pid} listening on {paths.socket}" in paths.log.read_text()


def test_second_start_says_already_running_and_starts_nothing(paths: DaemonPaths) -> None:
    pid = start(paths)
    again = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert again.returncode == 0
    assert f"already running on {paths.socket} (pid {pid})" in again.stdout
    assert paths.pid.read_text().strip() == str(pid)
    assert paths.log.read_text().count("listening on") == 1


def status_after_one_batch(paths: DaemonPaths, store: Path, points: int) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Start a daemon, have it acknowledge one batch (a run and ``points`` points) from a raw client,
    and run ``trackd daemon status`` while that client is connected; the pid and the result."""
    pid = start(paths)
    run_id = uuid.uuid4().hex
    raw = RawClient(paths.socket)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", points)]))
        assert raw.next_event() == Ack(seq=1)
        return pid, trackd_cli("daemon", "status", "--socket", str(paths.socket))
    finally:
        raw.close()


def test_status_shows_pid_clients_counts_backlog_and_errors(paths: DaemonPaths, store: Path) -> None:
    pid, result = status_after_one_batch(paths, store, 99)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"trackd daemon pid {pid}" in out
    assert re.search(r"clients\s+1 connected, 1 known", out)
    assert re.search(r"received\s+100 events", out)
    assert re.search(r"written\s+100 events, 99 metric points", out)
    assert re.search(r"backlog\s+0 events waiting", out)
    assert re.search(r"rejected\s+0 items \(0 events\); protocol errors 0; write errors 0", out)
    assert re.search(r"throttled\s+0 pauses", out)
    # Its rate over the totals' window, and what of it waits to be written.
    assert re.search(
        rf"client        pid {os.getpid()}@test(?: \(.*\))? connected, [\d.,]+ events/s over the (?:last [\d.]+ s|[\d.]+ s since it connected), "
        rf"everything it sent written, store {re.escape(str(store))}\n", out,
    ), out


def test_status_lists_connected_clients_and_only_the_first_ten_gone(paths: DaemonPaths, store: Path) -> None:
    # After a benchmark suite, status printed a line for each of hundreds of finished processes.
    start(paths)
    live = RawClient(paths.socket)
    try:
        assert isinstance(live.hello(str(store), client_id="live"), Welcome)
        for number in range(13):
            gone = RawClient(paths.socket)
            assert isinstance(gone.hello(str(store), client_id=f"gone-{number}"), Welcome)
            gone.close()
        wait_for(lambda: query_status(paths.socket)["clients_connected"] == 1, message="the 13 to leave")
        result = trackd_cli("daemon", "status", "--socket", str(paths.socket))
    finally:
        live.close()
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.strip().startswith("client        pid") and " connected," in line]) == 1
    assert len([line for line in lines if " gone, " in line]) == 10
    assert "... and 3 more gone (--json lists every client)" in result.stdout


def test_status_json_parses(paths: DaemonPaths) -> None:
    pid = start(paths)
    result = trackd_cli("daemon", "status", "--socket", str(paths.socket), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["pid"] == pid and status["socket"] == str(paths.socket)
    assert {"clients", "records_received", "records_written", "backlog_records", "errors"} <= status.keys()


def test_stop_writes_what_was_received_then_removes_socket_and_pid_file(paths: DaemonPaths, store: Path) -> None:
    pid = start(paths)
    run_id = uuid.uuid4().hex
    raw = RawClient(paths.socket)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 20_000)]))
        wait_for(lambda: query_status(paths.socket)["records_received"] == 20_001, message="the batch to arrive")
        result = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
        events = raw.events_until_closed()
    finally:
        raw.close()
    assert result.returncode == 0, result.stderr
    assert f"(pid {pid}) stopped" in result.stdout
    assert not alive(pid)
    assert Ack(seq=1) in events
    assert isinstance(events[-1], ErrorReply) and events[-1].code == ErrorCode.SHUTTING_DOWN
    assert len(metric_lines(store, run_id, "loss")) == 20_000
    assert not paths.socket.exists() and not paths.pid.exists()


def test_status_when_not_running_exits_1_with_a_clear_message(paths: DaemonPaths, tmp_path: Path) -> None:
    # An empty spool folder of its own: the session's may hold another test's spool, which status lists.
    result = trackd_cli("daemon", "status", "--socket", str(paths.socket), "--spool-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"trackd daemon is not running on {paths.socket}" in result.stderr
    assert result.stdout == ""


def test_status_of_a_stopped_daemon_names_its_pid_and_says_it_does_not_answer(paths: DaemonPaths) -> None:
    # A SIGSTOPped (or hung) daemon was reported as "not running", beside "a daemon holds the lock":
    # the user looked for no process while one held the socket.
    pid = start(paths)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = trackd_cli("daemon", "status", "--socket", str(paths.socket))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 1
    assert f"trackd daemon pid {pid} listens on {paths.socket} but does not answer; it is stopped (SIGSTOP" in result.stderr
    assert "not running" not in result.stderr


def test_stop_when_not_running_says_so(paths: DaemonPaths) -> None:
    result = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    assert result.returncode == 0
    assert f"trackd daemon is not running on {paths.socket}" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "daemon"),
        (("daemon",), "start"),
        (("daemon", "start"), "--foreground"),
        (("daemon", "stop"), "--timeout"),
        (("daemon", "status"), "--json"),
    ],
)
def test_help_of_each_command(args: tuple[str, ...], expected: str) -> None:
    result = trackd_cli(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ") and expected in result.stdout


def test_a_daemon_that_exits_at_once_is_reported_with_its_reason(paths: DaemonPaths, tmp_path: Path) -> None:
    env = {**inherited_env(), "TRACKD_DAEMON_ARGS": "--max-records 0"}
    result = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "daemon", "start", "--socket", str(paths.socket)],
        capture_output=True, text=True, timeout=45, env=env,
    )
    # This said only "the daemon did not start; see <log>".
    assert result.returncode == 1
    assert "exited with code 2" in result.stderr and "--max-records" in result.stderr, result.stderr


def test_a_client_whose_daemon_exits_at_once_says_why_and_does_not_restart_it_every_second(
    paths: DaemonPaths, tmp_path: Path
) -> None:
    env = {
        **inherited_env(), "TRACKD_SOCKET": str(paths.socket), "TRACKD_DAEMON_ARGS": "--max-records 0",
        "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
        "TRACKD_CONNECT_TIMEOUT": "3", "TRACKD_EXIT_TIMEOUT": "1",
    }
    code = "import time, trackd\ntrackd.log_metric('a', 1.0)\ntime.sleep(3)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=env)
    # It said "A trackd daemon was started ... but did not answer within 10 s", a second after the
    # daemon had exited with its usage error, and started it again every second.
    assert "exited with code 2" in result.stderr and "--max-records" in result.stderr, result.stderr
    assert paths.log.read_text().count("error: argument --max-records") == 1


# Run at the start of every Python process of the test's children (a sitecustomize on their
# PYTHONPATH, which the daemon a client starts inherits): a daemon process is killed by SIGKILL as
# it starts, as the OOM killer or someone's `kill -9` would, the first time (TRACKD_TEST_KILL=first)
# or every time (=every); each daemon started is counted, a line in TRACKD_TEST_STARTS.
KILL_DAEMONS_AT_START = """
import os, signal, sys
if sys.orig_argv[1:3] == ["-m", "trackd.daemon"]:
    with open(os.environ["TRACKD_TEST_STARTS"], "a") as starts:
        starts.write("started\\n")
    with open(os.environ["TRACKD_TEST_STARTS"]) as starts:
        first = len(starts.readlines()) == 1
    if first or os.environ["TRACKD_TEST_KILL"] == "every":
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _killing_env(paths: DaemonPaths, tmp_path: Path, kill: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(KILL_DAEMONS_AT_START)
    return {
        **inherited_env(), "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "TRACKD_TEST_KILL": kill, "TRACKD_TEST_STARTS": str(tmp_path / "starts"), "TRACKD_SOCKET": str(paths.socket),
        "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
    }


def test_a_client_whose_daemon_is_killed_as_it_starts_starts_it_again(paths: DaemonPaths, tmp_path: Path) -> None:
    code = "import trackd\ntrackd.set_experiment('e')\nwith trackd.start_run():\n    trackd.log_metric('loss', 0.5)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=_killing_env(paths, tmp_path, "first"))
    # set_experiment raised DaemonUnavailable ("... none could be started. The trackd daemon started
    # for ... exited with code -9 before it answered"), the next daemon healthy.
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (tmp_path / "starts").read_text().count("started") == 2
    assert [path.read_text().split()[1] for path in (tmp_path / "mlruns").glob("*/*/metrics/loss")] == ["0.5"]


def test_a_client_whose_every_daemon_is_killed_as_it_starts_tries_a_few_times_and_says_how_each_ended(
    paths: DaemonPaths, tmp_path: Path
) -> None:
    code = "import trackd\ntrackd.set_experiment('e')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=_killing_env(paths, tmp_path, "every"))
    assert result.returncode == 1 and "DaemonUnavailable" in result.stderr, result.stderr
    assert f"was killed by SIGKILL (signal 9) before it answered ({MAX_ENDED_STARTS} starts, each killed)" in result.stderr
    assert (tmp_path / "starts").read_text().count("started") == MAX_ENDED_STARTS  # not one a tick


def test_stop_of_a_daemon_a_running_client_started_returns_at_once_and_holds_until_it_logs_again(
    paths: DaemonPaths, tmp_path: Path
) -> None:
    # The autostarted daemon is the client's child. Stopped, it stayed a zombie until the client
    # exited, and `trackd daemon stop` (from any process) took the zombie for a daemon still
    # running: it waited its whole timeout and exited 1. The idle client then started a new daemon
    # at once, saying "Holding 0 events and retrying" and "reconnected", so no daemon could be
    # stopped while any client process lived.
    code = f"""
import json, os, subprocess, sys, time
import trackd
with trackd.start_run():
    trackd.log_metric("loss", 0.5)
pid = int(open({str(paths.pid)!r}).read())
started = time.monotonic()
stop = subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", {str(paths.socket)!r}],
                      capture_output=True, text=True, timeout=40)
took = time.monotonic() - started
deadline = time.monotonic() + 10
while os.path.exists(f"/proc/{{pid}}") and time.monotonic() < deadline:
    time.sleep(0.01)
reaped = not os.path.exists(f"/proc/{{pid}}")
time.sleep(1.0)  # twenty of the sender's send intervals: it restarted the daemon within one
restarted = os.path.exists({str(paths.pid)!r})
with trackd.start_run():  # something to send: now it starts one
    trackd.log_metric("loss", 0.25)
print(json.dumps({{"code": stop.returncode, "out": stop.stdout, "took": took, "reaped": reaped, "restarted": restarted}}))
"""
    env = {
        **inherited_env(), "TRACKD_SOCKET": str(paths.socket), "TRACKD_AUTOSTART": "1",
        "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=55, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and "stopped" in report["out"], report
    assert report["took"] < 20, report  # not a timing target: the old code waited out the 30 s timeout
    assert report["reaped"] and not report["restarted"], report
    runs = sorted((tmp_path / "mlruns" / "0").glob("*/metrics/loss"))
    assert sorted(path.read_text().split()[1] for path in runs) == ["0.25", "0.5"]


def test_a_process_logging_through_a_daemon_stop_says_nothing_and_loses_nothing(paths: DaemonPaths, tmp_path: Path) -> None:
    # It printed "unreachable: Connection reset by peer ... Holding N events and retrying" and then
    # "reconnected", for a daemon that autostart replaced within milliseconds.
    code = f"""
import json, subprocess, sys, time
import trackd
with trackd.start_run() as run:
    for step in range(3000):
        trackd.log_metric("loss", float(step), step=step)
        if step == 1000:
            trackd.flush()
            subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", {str(paths.socket)!r}],
                           capture_output=True, timeout=40, check=True)
        time.sleep(0.0005)
print(run.info.run_id)
"""
    env = {
        **inherited_env(), "TRACKD_SOCKET": str(paths.socket), "TRACKD_AUTOSTART": "1",
        "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=55, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    run_id = result.stdout.split()[-1]
    [loss] = (tmp_path / "mlruns" / "0").glob(f"{run_id}/metrics/loss")
    assert [int(line.split()[2]) for line in loss.read_text().splitlines()] == list(range(3000))


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a daemon (a user's training job, say), killed at teardown."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait(10)


def test_stop_after_a_daemon_was_killed_signals_nothing_and_removes_the_stale_pid_file(
    paths: DaemonPaths, bystander: subprocess.Popen[bytes]
) -> None:
    # The pid file a SIGKILL leaves behind named, after pid reuse, someone's training job: stop
    # SIGTERMed it and said "trackd daemon (pid N) stopped after writing everything it had received".
    os.kill(start(paths), signal.SIGKILL)
    wait_for(lambda: not paths.socket.exists() or not query_answers(paths), message="the daemon to die")
    paths.pid.write_text(f"{bystander.pid}\n")
    status = trackd_cli("daemon", "status", "--socket", str(paths.socket))
    assert status.returncode == 1 and f"its pid file {paths.pid} is stale (pid {bystander.pid}" in status.stderr
    result = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    assert result.returncode == 0, result.stderr
    assert f"trackd daemon is not running on {paths.socket}; removed its stale pid file {paths.pid}" in result.stdout
    assert f"named pid {bystander.pid}, which is now another process's, and was not signalled" in result.stdout
    assert bystander.poll() is None, "stop signalled the process a stale pid file named"
    assert not paths.pid.exists()


def test_stop_signals_the_process_listening_on_the_socket_whatever_the_pid_file_says(
    paths: DaemonPaths, bystander: subprocess.Popen[bytes]
) -> None:
    pid = start(paths)
    paths.pid.write_text(f"{bystander.pid}\n")
    result = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    assert result.returncode == 0, result.stderr
    assert f"trackd daemon (pid {pid}) stopped after writing everything it had received" in result.stdout
    assert bystander.poll() is None and not alive(pid)


def query_answers(paths: DaemonPaths) -> bool:
    try:
        query_status(paths.socket, timeout=1.0)
    except DaemonUnavailable:
        return False
    return True


# 1e23 was taken, and `trackd sync --timeout 1e23` ended in a traceback (OverflowError from poll()).
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon", "1e23"])
@pytest.mark.parametrize("command", [("daemon", "stop", "--timeout"), ("daemon", "start", "--idle-timeout"), ("sync", "--timeout")])
def test_a_seconds_flag_refuses_what_is_not_finite_seconds(command: tuple[str, ...], value: str) -> None:
    # stop's --timeout -1 was taken, and stop then said "did not exit within -1 s" and exited 1.
    # start's --idle-timeout -1 was taken too: "already running", exit 0, when a daemon answered;
    # else the daemon it spawned refused it and start exited 1 quoting the daemon's log.
    result = trackd_cli(*command[:-1], "--socket", "/nonexistent/d.sock", command[-1], value)
    assert result.returncode == 2
    assert f"argument {command[-1]}: expected a number of seconds, 0 or more, at most 604800, got '{value}'" in result.stderr


def test_status_rates_count_a_burst_received_just_now(paths: DaemonPaths, store: Path) -> None:
    # Rates ended at the last once-a-second sample: status right after a burst said 0.0 events/s.
    _, result = status_after_one_batch(paths, store, 999)
    assert result.returncode == 0, result.stderr
    received = re.search(r"received\s+1,000 events, [\d.]+ (?:bytes|KiB) \(([\d,.]+) events/s over the last ([\d.]+) s\)", result.stdout)
    written = re.search(r"written\s+1,000 events, 999 metric points \(([\d,.]+) events/s over the last [\d.]+ s\)", result.stdout)
    assert received and written, result.stdout
    rates = [float(match.group(1).replace(",", "")) for match in (received, written)]
    assert min(rates) > 0 and float(received.group(2)) <= 10


@pytest.mark.parametrize(("size", "shown"), [(0, "0 bytes"), (1023, "1023 bytes"), (4_880_054, "4.7 MiB"), (3 * 2**40, "3072.0 GiB")])
def test_status_shows_sizes_as_a_person_reads_them(size: int, shown: str) -> None:
    # It printed "4880054 bytes": a sum to do at 3 am, as the uptime in seconds was.
    assert byte_size(size) == shown


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder like /tmp: writable by everyone, sticky."""
    folder = Path(tempfile.mkdtemp(prefix="td-shared-", dir=SOCKET_PARENT))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("command", [("daemon", "start"), ("sync",)])
def test_a_socket_in_a_folder_others_can_write_is_refused_saying_what_to_do(
    shared_folder: Path, command: tuple[str, ...], tmp_path: Path
) -> None:
    # TRACKD_SOCKET=/tmp/x.sock: `trackd daemon start` died with a PermissionError traceback.
    socket_path = shared_folder / "x.sock"
    (tmp_path / "left.spool").write_bytes(b"")  # sync starts a daemon only with something to deliver
    result = trackd_cli(*command, "--socket", str(socket_path), *(["--spool-dir", str(tmp_path)] if command == ("sync",) else []))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert f"trackd refuses the folder {shared_folder}: other users can write to it (mode 1777)" in result.stderr
    # The option the user passed, not TRACKD_SOCKET (tests/test_cli_words.py).
    assert f"Pass --socket a socket path in such a folder, e.g. {shared_folder}/trackd-{os.getuid()}/trackd.sock" in result.stderr
    assert list(shared_folder.iterdir()) == []


def test_a_client_whose_socket_folder_others_can_write_says_why_no_daemon_starts(shared_folder: Path, tmp_path: Path) -> None:
    # It said "none could be started. Start one with `trackd daemon start`", which failed the same way.
    env = {
        **inherited_env(), "TRACKD_SOCKET": str(shared_folder / "x.sock"), "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"),
        "TRACKD_SPOOL_DIR": str(tmp_path / "spool"), "TRACKD_CONNECT_TIMEOUT": "2",
    }
    code = "import trackd\ntry:\n    trackd.set_experiment('x')\nexcept trackd.DaemonUnavailable as exc:\n    print(exc)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=env)
    assert result.returncode == 0, result.stderr
    assert f"none could be started. Cannot start a trackd daemon for {shared_folder}/x.sock: trackd refuses the folder" in result.stdout
    assert "Set TRACKD_SOCKET to a socket path in such a folder" in result.stdout
    assert "Start one with" not in result.stdout


@pytest.mark.parametrize("starter", ["client", "daemon start", "daemon itself"])
def test_a_socket_path_too_long_for_a_unix_socket_is_refused_saying_what_to_set(starter: str, tmp_path: Path) -> None:
    # A deep $TMPDIR or $TRACKD_SOCKET gave "OSError: AF_UNIX path too long" from the daemon's
    # bind(), which said neither the limit nor what to change; the client started one per retry.
    deep = tmp_path / ("d" * 120)
    socket_path = deep / "x.sock"
    if starter == "client":
        env = {
            **inherited_env(), "TRACKD_SOCKET": str(socket_path), "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"),
            "TRACKD_SPOOL_DIR": str(tmp_path / "spool"), "TRACKD_CONNECT_TIMEOUT": "2",
        }
        code = "import trackd\ntry:\n    trackd.set_experiment('x')\nexcept trackd.DaemonUnavailable as exc:\n    print(exc)\n"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=env)
        assert result.returncode == 0, result.stderr
        said = result.stdout
    elif starter == "daemon start":
        result = trackd_cli("daemon", "start", "--socket", str(socket_path))
        assert result.returncode == 1
        said = result.stderr
    else:
        result = subprocess.run(
            [sys.executable, "-m", "trackd.daemon", "--socket", str(socket_path)], capture_output=True, text=True, timeout=45
        )
        assert result.returncode == 1
        said = result.stderr
    assert "Traceback" not in said
    assert f"{socket_path}: its path is {len(os.fsencode(socket_path))} bytes long, more than the 107" in said, said
    setting = "set TRACKD_SOCKET to" if starter == "client" else "pass --socket"  # what the user used
    assert f"{setting} a shorter one, e.g. /tmp/trackd-{os.getuid()}/trackd.sock" in said
    assert not deep.exists()  # and no daemon was started there, nor its folder made


def test_sync_with_nothing_to_deliver_starts_no_daemon(paths: DaemonPaths, tmp_path: Path) -> None:
    # It started a daemon first, said "Nothing to deliver", and left that daemon running 600 s.
    # Run as `python -m trackd`, which a venv whose scripts folder is not on PATH needs.
    result = subprocess.run(
        [sys.executable, "-m", "trackd", "sync", "--socket", str(paths.socket), "--spool-dir", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=45,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Nothing to deliver: no spool files in {tmp_path / 'spool'}\n"
    assert not paths.socket.exists() and not paths.pid.exists()


@pytest.fixture
def stopping_daemon(paths: DaemonPaths) -> Iterator[subprocess.Popen[str]]:
    """What a daemon that is shutting down looks like from outside for 1.5 s (its idle exit, or
    `trackd daemon stop` writing what it holds): it holds the socket's lock and nothing listens."""
    paths.directory.mkdir(mode=0o700, exist_ok=True)
    code = "import fcntl, sys, time\nf = open(sys.argv[1], 'ab')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(1.5)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(paths.lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait(10)
    holder.stdout.close()


def test_a_job_started_while_the_daemon_shuts_down_starts_its_successor_once_it_has_gone(
    paths: DaemonPaths, tmp_path: Path, stopping_daemon: subprocess.Popen[str]
) -> None:
    # The daemon it started exited "already running", and the job waited for an answer nothing
    # would give: set_experiment raised after TRACKD_CONNECT_TIMEOUT ("none answered within 10 s
    # and none could be started"), though the lock was free after 1.5 s.
    env = {
        **inherited_env(), "TRACKD_SOCKET": str(paths.socket), "TRACKD_TRACKING_URI": str(tmp_path / "mlruns"),
        "TRACKD_SPOOL_DIR": str(tmp_path / "spool"), "TRACKD_CONNECT_TIMEOUT": "8",
    }
    code = "import time, trackd\nstart = time.monotonic()\ntrackd.set_experiment('e')\n" \
        "with trackd.start_run():\n    trackd.log_metric('loss', 0.5)\nprint(round(time.monotonic() - start, 1))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert float(result.stdout) < 6, result.stdout  # not a timing target: the old code failed after 8 s
    assert [path.read_text().split()[1] for path in (tmp_path / "mlruns").glob("*/*/metrics/loss")] == ["0.5"]


def test_daemon_start_while_the_daemon_shuts_down_starts_its_successor_once_it_has_gone(
    paths: DaemonPaths, stopping_daemon: subprocess.Popen[str]
) -> None:
    # It waited 15 s and said "the daemon did not start: exited with code 3: ... already running".
    result = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert result.returncode == 0 and "trackd daemon started" in result.stdout, result.stderr
    assert query_status(paths.socket)["pid"] == int(paths.pid.read_text())


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0 s"), (59.4, "59 s"), (59.6, "59 s"), (60, "1 min 0 s"), (200, "3 min 20 s"), (3_600, "1 h 0 min 0 s"), (93_784, "1 d 2 h 3 min"), (172_800, "2 d 0 h 0 min")],
)
def test_status_shows_uptime_in_days_hours_and_minutes(seconds: float, shown: str) -> None:
    # "uptime 93784 s" was a sum to do at 3 am.
    assert duration(seconds) == shown


def test_status_does_not_say_no_process_is_watched_while_a_job_owning_its_run_is_connected(paths: DaemonPaths, store: Path) -> None:
    # Beside a connected training process that owns its run, status said "0 processes watched": the
    # count is of processes that disconnected with runs not ended, which the daemon fails if they die.
    start(paths)
    env = {**inherited_env(), "TRACKD_SOCKET": str(paths.socket), "TRACKD_TRACKING_URI": str(store), "TRACKD_AUTOSTART": "0"}
    code = "import sys, trackd\ntrackd.start_run()\ntrackd.log_metric('a', 1.0)\ntrackd.flush()\nprint('ready', flush=True)\nsys.stdin.read()\n"
    job = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout is not None and job.stdout.readline() == "ready\n"
        result = trackd_cli("daemon", "status", "--socket", str(paths.socket))
    finally:
        assert job.stdin is not None and job.stdout is not None
        job.stdin.close()
        assert job.wait(30) == 0
        job.stdout.close()
    assert result.returncode == 0, result.stderr
    assert "processes watched" not in result.stdout, result.stdout
    assert "0 processes disconnected with runs not ended (watched until they exit)" in result.stdout, result.stdout


@pytest.mark.parametrize("args", [["sync"], ["daemon", "status", "--json"]])
def test_output_into_a_closed_pipe_ends_without_a_traceback(paths: DaemonPaths, tmp_path: Path, args: list[str]) -> None:
    # `trackd daemon status --json | head -5` printed a BrokenPipeError traceback once head had its lines.
    if args[0] == "daemon":
        start(paths)
    else:
        args = [*args, "--spool-dir", str(tmp_path / "empty")]  # "Nothing to deliver", on stdout
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        result = subprocess.run([sys.executable, "-m", "trackd.cli", *args, "--socket", str(paths.socket)],
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=45)
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
