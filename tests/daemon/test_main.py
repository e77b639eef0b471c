"""``python -m trackd.daemon``'s flags, run as the module: nonsense is refused before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, wait_for

from trackd._paths import DaemonPaths
from trackd.client._launcher import daemon_answers, spawn_daemon
from trackd.protocol import Welcome

HUGE_INT = "1" + "0" * 400
BAD_FLAGS = [
    ("--max-records", "0", "expected a whole number of at least 1, at most 2**63 - 1, got '0'"),
    ("--max-records", "1e3", "expected a whole number of at least 1, at most 2**63 - 1, got '1e3'"),
    ("--max-age", "-1", "expected a number of seconds, 0 or more, at most 604800, got '-1'"),
    ("--max-age", "nan", "expected a number of seconds, 0 or more, at most 604800, got 'nan'"),
    ("--max-connections", "0", "expected a whole number of at least 1, at most 2**63 - 1, got '0'"),
    ("--max-open-files", "-5", "expected a whole number of at least 1, at most 2**63 - 1, got '-5'"),
    ("--log-max-bytes", "0", "expected a whole number of at least 1, at most 2**63 - 1, got '0'"),
    ("--max-events-per-second", "0", "expected a whole number of at least 1, at most 2**63 - 1, got '0'"),
    ("--idle-timeout", "-1", "expected a number of seconds, 0 or more, at most 604800, got '-1'"),
    ("--idle-timeout", "inf", "expected a number of seconds, 0 or more, at most 604800, got 'inf'"),
    # --max-age 1e300 started a daemon whose start line said "after 1000...000 ms" and which held a
    # client's events until that client flushed; --idle-timeout 1e300 was "never" in disguise.
    ("--max-age", "1e300", "expected a number of seconds, 0 or more, at most 604800, got '1e300'"),
    ("--max-age", "604801", "expected a number of seconds, 0 or more, at most 604800, got '604801'"),
    ("--idle-timeout", "1e9", "expected a number of seconds, 0 or more, at most 604800, got '1e9'"),
    # This started a daemon that raised OverflowError (int too large to convert to float) at every
    # connect: no client could connect, and each spooled its events.
    ("--max-events-per-second", HUGE_INT, f"expected a whole number of at least 1, at most 2**63 - 1, got '{HUGE_INT}'"),
    ("--max-records", HUGE_INT, f"expected a whole number of at least 1, at most 2**63 - 1, got '{HUGE_INT}'"),
    ("--max-open-files", str(2**63), f"expected a whole number of at least 1, at most 2**63 - 1, got '{2**63}'"),
    ("--log-max-bytes", str(2**63), f"expected a whole number of at least 1, at most 2**63 - 1, got '{2**63}'"),
]


def _daemon(socket_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--socket", str(socket_path), *args],
        env=child_env(socket_path, **env), capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize(("flag", "value", "message"), BAD_FLAGS, ids=[f"{f}={v[:10]}" for f, v, _ in BAD_FLAGS])
def test_daemon_refuses_an_out_of_range_flag_with_exit_code_2(socket_path: Path, flag: str, value: str, message: str) -> None:
    # `--max-records 0 --max-age -1 --max-connections 0` used to start a daemon.
    result = _daemon(socket_path, flag, value)
    assert result.returncode == 2
    # One line says it (after argparse's usage); an autostarted daemon's client quotes its log's last line.
    assert result.stderr.splitlines()[-1] == f"python -m trackd.daemon: error: argument {flag}: {message}", result.stderr
    assert not socket_path.exists()


def test_daemon_names_trackd_daemon_args_when_a_bad_flag_comes_from_it(socket_path: Path) -> None:
    # An autostarted daemon gets its flags only from this variable; the error says where to look.
    result = _daemon(socket_path, TRACKD_DAEMON_ARGS="--max-connections 0")
    assert result.returncode == 2
    assert "(flags from TRACKD_DAEMON_ARGS): error: argument --max-connections: expected a whole number of at least 1" in result.stderr


def test_daemon_refuses_a_huge_duration_from_trackd_daemon_args_naming_the_variable(socket_path: Path) -> None:
    # How an autostarted daemon is configured; it took --max-age 1e300.
    result = _daemon(socket_path, TRACKD_DAEMON_ARGS="--max-age 1e300")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "python -m trackd.daemon (flags from TRACKD_DAEMON_ARGS): error: argument --max-age: expected a number "
        "of seconds, 0 or more, at most 604800, got '1e300'"
    )


def test_daemon_takes_durations_up_to_a_week_and_says_so_in_its_help(socket_path: Path) -> None:
    # Inclusive, as the client's bound: the flags are converted before --help prints and exits 0.
    result = _daemon(socket_path, "--max-age", "604800", "--idle-timeout", "604800", "--help")
    assert result.returncode == 0 and result.stdout.count("at most 604800 (a week)") == 2, result.stdout


def test_daemon_refuses_trackd_daemon_args_that_are_not_shell_words_with_exit_code_2(socket_path: Path) -> None:
    # An unclosed quote ended in shlex's traceback and exit code 1, which read as a crash.
    result = _daemon(socket_path, TRACKD_DAEMON_ARGS="--max-age '1")
    assert result.returncode == 2
    assert result.stderr == (
        "trackd: Cannot start: Environment variable TRACKD_DAEMON_ARGS=\"--max-age '1\" is not valid: No closing "
        "quotation; expected daemon flags as shell words, e.g. --max-open-files 4096.\n"
    )


def test_daemon_starts_with_the_smallest_values_each_flag_takes(socket_path: Path) -> None:
    args = ("--max-age", "0", "--max-records", "1", "--max-connections", "1", "--max-open-files", "1", "--idle-timeout", "0")
    daemon = DaemonProcess(socket_path, *args).start()
    try:
        wait_for(lambda: "listening on" in daemon.log(), message="the start line")
        assert "writes of up to 1 event or after 0 ms" in daemon.log()  # it said "1 events"
    finally:
        assert daemon.stop() == 0


def test_the_log_file_is_rotated_past_its_size_keeping_one_older_file(paths: DaemonPaths, store: Path) -> None:
    # A daemon serving a benchmark suite logs two lines per process, and lived on with one file
    # that only grew. Started as a client starts it: its stderr is the log file too, and follows it.
    process = spawn_daemon(paths, extra_args=["--log-max-bytes", "2000"])
    try:
        wait_for(lambda: daemon_answers(paths.socket, 0.2), message="daemon start")
        for _ in range(20):  # each connection logs a line as it comes and one as it goes
            raw = RawClient(paths.socket)
            assert isinstance(raw.hello(str(store)), Welcome)
            raw.close()
        wait_for(lambda: Path(f"{paths.log}.1").exists(), message="a rotation")
        assert paths.log.stat().st_size <= 2000
        assert 1000 < Path(f"{paths.log}.1").stat().st_size <= 2000
        assert os.readlink(f"/proc/{process.pid}/fd/2") == str(paths.log)  # not the renamed file
        assert os.readlink(f"/proc/{process.pid}/cwd") == "/"  # nor the job's folder, kept busy
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_bad_trackd_loop_stops_the_daemon_with_one_line_and_exit_code_2(socket_path: Path) -> None:
    # It raised ValueError inside Server.run: a traceback in the log and exit code 1, like a crash.
    result = _daemon(socket_path, "--log-file", str(socket_path) + ".log", TRACKD_LOOP="bogus")
    assert result.returncode == 2, result.stderr
    expected = "Environment variable TRACKD_LOOP='bogus' is not valid: expected one of auto, uvloop, asyncio (any case)."
    assert result.stderr == f"trackd: Cannot start: {expected}\n"
    log = Path(str(socket_path) + ".log").read_text()
    assert expected in log and "Traceback" not in log
    assert not socket_path.exists()


def test_a_client_whose_daemon_refuses_trackd_loop_says_why(socket_path: Path, tmp_path: Path) -> None:
    env = child_env(
        socket_path, TRACKD_LOOP="bogus", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"),
        TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_EXIT_TIMEOUT="1",
    )
    result = subprocess.run([sys.executable, "-c", "import trackd\ntrackd.log_metric('a', 1.0)\n"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "exited with code 2 before it answered: trackd: Cannot start: Environment variable TRACKD_LOOP='bogus'" in result.stderr
    assert "Traceback" not in (socket_path.parent / "d.sock.log").read_text()


@pytest.mark.parametrize(("source", "value"), [("TRACKD_LOOP", "AsyncIO"), ("--loop", "ASYNCIO")])
def test_the_event_loop_is_named_in_any_case(socket_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, value: str) -> None:
    # TRACKD_AUTOSTART took "OFF" while TRACKD_ON_FULL refused "DROP" and TRACKD_LOOP "ASYNCIO".
    if source == "TRACKD_LOOP":
        monkeypatch.setenv("TRACKD_LOOP", value)
    daemon = DaemonProcess(socket_path, *(["--loop", value] if source == "--loop" else [])).start()
    try:
        assert daemon.status()["loop"] == "asyncio"
    finally:
        assert daemon.stop() == 0
