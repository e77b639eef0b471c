"""The buffer's byte bound on inline artifacts (TRACKD_MAX_BUFFERED_BYTES), with real processes.

The event bound counts an artifact as one event: a loop of 1 MiB ``log_text`` calls beside a
stopped daemon grew the process by 512 MB in 0.4 s, and 25,000 events of them would be 25 GB.
(How much memory it takes now is bench_client_memory.py's question, not a test's.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from helpers import DaemonProcess, child_env, wait_for
from mlflow.tracking import MlflowClient

ARTIFACTS = 40
MIB = 1024 * 1024
# Four artifacts' worth: far below what the 40 logged by LOGGER hold, and below what the unacked
# window takes (8 MiB) while the daemon is stopped, so the bound is what stops the calls.
BOUND = 4 * MIB

# Starts a run (and with argv[1] "connected" delivers it) and prints its id; logs one metric point
# and one 1 MiB log_text (content: the step's number, repeated) a step, ARTIFACTS steps, after "go" on stdin; prints "logged" and the sender's stats, then, after a
# second line on stdin, flushes and prints what the flush reported.
LOGGER = f"""
import json, sys, trackd
from trackd.client import get_client
run = trackd.start_run()
if sys.argv[1:] == ["connected"]:
    trackd.flush()  # connected before the test stops the daemon
print(run.info.run_id, flush=True)
sys.stdin.readline()
for i in range({ARTIFACTS}):
    trackd.log_metric("step", float(i), step=i)
    trackd.log_text(f"{{i:08d}}" * ({MIB} // 8), f"t/{{i}}.txt")
stats = get_client().stats()
print("logged", json.dumps({{k: stats[k] for k in ("dropped", "spooled")}}), flush=True)
if sys.stdin.readline() == "flush\\n":
    report = trackd.flush(timeout=60)
    print("flushed", json.dumps({{"dropped": report.dropped}}), flush=True)
    trackd.end_run()
"""


def _start(env: dict[str, str], stderr: IO[str] | int = subprocess.PIPE, *args: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, "-c", LOGGER, *args], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def _say(child: subprocess.Popen[str], line: str) -> None:
    assert child.stdin is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()


def _stored(store: Path, run_id: str) -> tuple[list[int], dict[int, bytes]]:
    """The run's metric steps and its t/ artifacts (step -> content), read back by MLflow."""
    client = MlflowClient(tracking_uri=f"file:{store}")
    steps = [m.step for m in client.get_metric_history(run_id, "step")]
    root = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    files = {int(Path(info.path).stem): (root / info.path).read_bytes() for info in client.list_artifacts(run_id, "t")}
    return sorted(steps), files


def _content(i: int) -> bytes:
    return f"{i:08d}".encode() * (MIB // 8)


def _log_beside_a_stopped_daemon(
    daemon: DaemonProcess, env: dict[str, str], err: Path, while_stopped: Callable[[subprocess.Popen[str]], None]
) -> tuple[str, int]:
    """Run LOGGER's loop while the daemon is stopped (``while_stopped`` looks at it then), resume the
    daemon, flush; returns the run id and the flush's dropped count. The child's stderr goes to ``err``."""
    with err.open("w") as stderr:
        child, run_id = _start(env, stderr, "connected")
    try:
        daemon.signal(signal.SIGSTOP)
        try:
            _say(child, "go")
            while_stopped(child)
        finally:
            daemon.signal(signal.SIGCONT)
        assert child.stdout is not None
        logged = child.stdout.readline()
        assert logged.startswith("logged"), logged
        _say(child, "flush")
        out, _ = child.communicate(timeout=90)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err.read_text()
    dropped: int = json.loads(out.split(" ", 1)[1])["dropped"]
    return run_id, dropped


@pytest.mark.timeout(120)
def test_a_call_waits_at_the_byte_bound_while_the_daemon_is_stopped_and_loses_nothing(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_MAX_BUFFERED_BYTES=str(BOUND))
    err = tmp_path / "err"

    def waits(child: subprocess.Popen[str]) -> None:
        # The calls wait for room (the event bound, 25,000, is far away): this used to log all
        # 40 MiB into memory at once and never wait.
        wait_for(lambda: "logging calls are waiting for room" in err.read_text(), 30, message="the calls to wait for room")
        assert child.poll() is None

    run_id, dropped = _log_beside_a_stopped_daemon(daemon, env, err, waits)
    # Said once the stopped daemon has acknowledged nothing for 2 s while a call waits.
    [line] = [line for line in err.read_text().splitlines() if line]
    assert line.startswith("trackd: logging calls are waiting for room ("), line
    assert (
        f"s in all so far): the event buffer holds its bound of inline artifact content (TRACKD_MAX_BUFFERED_BYTES={BOUND}, "
        f"4.0 MiB) because the daemon at {daemon.paths.socket} has acknowledged nothing for "
    ) in line, line
    assert " s: it may be stopped (SIGSTOP, a debugger) or stuck writing to its disk; if it stays silent, trackd gives it up " in line, line
    assert line.endswith(" s more (TRACKD_CONNECT_TIMEOUT=10), and the calls go on (TRACKD_ON_FULL=block)."), line
    assert dropped == 0
    steps, files = _stored(store, run_id)
    assert steps == list(range(ARTIFACTS))
    assert files == {i: _content(i) for i in range(ARTIFACTS)}


@pytest.mark.timeout(120)
def test_artifacts_past_the_byte_bound_are_dropped_and_counted_under_drop(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_MAX_BUFFERED_BYTES=str(BOUND), TRACKD_ON_FULL="drop")
    err = tmp_path / "err"
    run_id, dropped = _log_beside_a_stopped_daemon(daemon, env, err, lambda child: None)
    # Nothing was dropped: the 40 MiB went into memory while the daemon was stopped.
    assert dropped > 0
    said = err.read_text()
    assert f"(TRACKD_MAX_BUFFERED_BYTES={BOUND}, 4.0 MiB)" in said and "new artifacts are dropped and counted" in said
    steps, files = _stored(store, run_id)
    assert steps == list(range(ARTIFACTS)), "a metric point was dropped: only artifacts pass the byte bound"
    assert len(files) + dropped == ARTIFACTS
    assert all(content == _content(i) for i, content in files.items())


@pytest.mark.timeout(120)
def test_artifacts_past_half_the_byte_bound_are_spooled_without_a_daemon_and_delivered_once(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    # A connect timeout longer than the test: only the byte bound can have spooled them.
    env = child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_MAX_BUFFERED_BYTES=str(BOUND), TRACKD_AUTOSTART="0",
        TRACKD_CONNECT_TIMEOUT="600", TRACKD_SPOOL_DIR=str(spool_dir),
    )
    child, run_id = _start(env)
    _say(child, "go")
    try:
        assert child.stdout is not None
        logged = child.stdout.readline()
        assert logged.startswith("logged"), logged
        # They stayed in memory, all 40 MiB, until connect_timeout or 12,500 events.
        assert json.loads(logged.split(" ", 1)[1])["spooled"] > 0
        _say(child, "exit")
        out, err = child.communicate(timeout=60)  # exit: no daemon answers, the rest is spooled too
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    daemon = DaemonProcess(socket_path).start()
    try:
        sync = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert sync.returncode == 0, sync.stderr
        wait_for(lambda: not list(spool_dir.glob("*.spool")), 10, message="the spool file removed")
        steps, files = _stored(store, run_id)
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert steps == list(range(ARTIFACTS)), "points lost or written twice"
    assert files == {i: _content(i) for i in range(ARTIFACTS)}
