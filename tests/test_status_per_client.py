"""``trackd daemon status`` shows each client's rate and backlog, over the window the totals use.

A real daemon, real client processes, and the real command (``trackd daemon status [--json]``)
run as a subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, child_env, wait_for

# Logs `points` points and flushes, prints "ready"; at a line on stdin logs one more point, left to
# the daemon's batcher (any client's flush makes the daemon write everything it holds, so the
# points come after every child's flush); at the next line it ends its run and exits.
CHILD = """
import sys, trackd
trackd.set_tracking_uri({store!r})
trackd.start_run()
for step in range({points}):
    trackd.log_metric("loss", 0.5, step=step)
trackd.flush()
print("ready", flush=True)
sys.stdin.readline()
trackd.log_metric("last", 1.0)
sys.stdin.readline()
trackd.end_run()
"""


@pytest.fixture
def slow_daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    """A daemon that holds what no flush asks for for ten minutes (--max-age 600): a backlog that stays."""
    proc = DaemonProcess(socket_path, "--max-age", "600").start()
    yield proc
    assert proc.stop() == 0, proc.log()


def start_child(store: Path, socket_path: Path, points: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(store=str(store), points=points)],
        env=child_env(socket_path, TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n", child.communicate(timeout=30)[1]
    return child


def log_last_point(*children: subprocess.Popen[str]) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("last\n")
        child.stdin.flush()


def finish(child: subprocess.Popen[str]) -> None:
    _, err = child.communicate("go\n" if child.poll() is None else None, timeout=30)
    assert child.returncode == 0, err


def status_json(socket_path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "status", "--json", "--socket", str(socket_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def entry(status: dict[str, Any], pid: int) -> dict[str, Any]:
    clients: list[dict[str, Any]] = [client for client in status["clients"] if client["pid"] == pid]
    [client] = clients
    return client


def settled(socket_path: Path, *children: subprocess.Popen[str]) -> dict[str, Any]:
    """The status once each child's last point has reached the daemon (it waits there, unwritten)."""
    log_last_point(*children)
    def each_has_one_waiting() -> bool:
        status = status_json(socket_path)
        return all(entry(status, child.pid).get("backlog_records") == 1 for child in children)

    wait_for(each_has_one_waiting, 20, interval=0.1, message="each client's last point in the daemon's backlog")
    return status_json(socket_path)


def test_status_json_gives_each_client_its_events_rate_and_backlog(slow_daemon: DaemonProcess, store: Path) -> None:
    # The reply listed clients without a rate or backlog: which one was sending, or stuck, was not
    # to be told from the totals.
    few, many = start_child(store, slow_daemon.paths.socket, 10), start_child(store, slow_daemon.paths.socket, 30)
    try:
        status = settled(slow_daemon.paths.socket, few, many)
    finally:
        finish(few)
        finish(many)
    a, b = entry(status, few.pid), entry(status, many.pid)
    # Counted per batch: the same run set-up in both, and 20 more points from the second.
    assert b["records_received"] - a["records_received"] == 20
    assert a["records_received"] + b["records_received"] == status["records_received"]
    assert a["backlog_records"] + b["backlog_records"] == status["backlog_records"] == 2
    # The totals' window, or since the client connected if shorter: each client's rate is at least
    # its events spread over the whole window, so theirs add up to at least the total (each rounded
    # to 0.1). Both connected within this daemon's window: it was exactly the total, which
    # under-reported a client that had just connected (tests/test_status_rate_new_client.py).
    assert a["receive_rate"] + b["receive_rate"] >= status["receive_rate"] - 0.15
    assert a["receive_rate"] < b["receive_rate"]


def test_status_text_shows_each_client_rate_and_backlog_in_words(slow_daemon: DaemonProcess, store: Path) -> None:
    # "1 events waiting" in the totals; and the client line had no rate nor backlog.
    child = start_child(store, slow_daemon.paths.socket, 5)
    try:
        status = settled(slow_daemon.paths.socket, child)
        result = subprocess.run(
            [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(slow_daemon.paths.socket)],
            capture_output=True, text=True, timeout=30,
        )
    finally:
        finish(child)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  backlog       1 event waiting to be written (" in "\n".join(lines), result.stdout
    [line] = [line for line in lines if line.startswith(f"  client        pid {child.pid}@")]
    # Its rate says what it is over (tests/test_status_client_identity.py).
    assert re.search(r" connected, [\d,.]+ events/s over the (last [\d.]+ s|[\d.]+ s since it connected), 1 event waiting to be written, ", line), line
    assert status["clients_connected"] == 1


def test_a_client_that_is_done_has_nothing_waiting(daemon: DaemonProcess, store: Path) -> None:
    # Its events were written when it ended its run (a flush): its backlog is 0 again, not what it sent.
    child = start_child(store, daemon.paths.socket, 3)
    finish(child)
    wait_for(lambda: daemon.status()["clients_connected"] == 0, 20, message="the client to disconnect")
    client = entry(status_json(daemon.paths.socket), child.pid)
    assert client["connected"] is False and client["backlog_records"] == 0 and client["records_received"] > 3
