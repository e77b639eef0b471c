"""`trackd daemon status` says each client's state and its runs in words a user reads.

A reviewer read "gone, 0 events waiting to be written, batch 1/1 written" beside a job SIGKILLed
mid-run: protocol sequence numbers, and nothing of the run the daemon had marked FAILED for it;
and no line said how many runs were still going. Real processes against a real daemon: one that
runs a run and waits, one attached to that run (a run is counted once, however many processes log
to it), and one SIGKILLed with its run open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, wait_for
from test_status_run_counts import start_child, statuses

from trackd.cli import main as cli_main

WAIT_THEN_END = "sys.stdin.readline()\ntrackd.end_run()"


def status(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], dict[str, Any]]:
    """The status text's lines and its --json reply, as the CLI prints them."""
    assert cli_main(["daemon", "status", "--socket", str(socket_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert cli_main(["daemon", "status", "--socket", str(socket_path), "--json"]) == 0
    return lines, json.loads(capsys.readouterr().out)


def client_line(lines: list[str], pid: int) -> str:
    [line] = [line for line in lines if line.startswith(f"  client        pid {pid}@")]
    return line


def test_status_says_runs_running_and_failed_for_a_sigkilled_client_in_words(
    daemon: DaemonProcess, store: Path, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner, shared = start_child(store, socket_path, then=WAIT_THEN_END)
    attached, _ = start_child(store, socket_path, start=f"run_id={shared!r}", then=WAIT_THEN_END)
    killed, killed_run = start_child(store, socket_path, then="os.kill(os.getpid(), signal.SIGKILL)")
    killed.communicate(timeout=60)
    try:
        wait_for(lambda: daemon.status()["runs_failed_for_exited_clients"] == 1, timeout=30, message="the SIGKILLed run failed")
        lines, reply = status(socket_path, capsys)
    finally:
        for child in (attached, owner):
            child.communicate("\n", timeout=60)
    assert statuses(store, [killed_run]) == ["FAILED"]
    # Two processes log to the shared run: it is one run running.
    assert reply["runs_open"] == 1
    [runs] = [line for line in lines if line.startswith("  runs          ")]
    assert runs.endswith("; 1 running in connected processes"), runs
    owner_line = client_line(lines, owner.pid)
    assert " connected, " in owner_line and ", everything it sent written, running 1 run, store " in owner_line, owner_line
    assert ", running 1 run, " in client_line(lines, attached.pid)
    killed_line = client_line(lines, killed.pid)
    assert " gone, everything it sent written, 1 run marked FAILED: its process exited without ending it, store " in killed_line, killed_line
    entries = {entry["pid"]: entry for entry in reply["clients"]}
    assert (entries[killed.pid]["runs_failed"], entries[owner.pid]["runs_failed"]) == (1, 0)
    # --json keeps the batch numbers the text no longer prints.
    assert entries[owner.pid]["written_seq"] == entries[owner.pid]["received_seq"] > 0
    assert not any("batch " in line for line in lines if line.startswith("  client  ")), lines

    # Both ended their run and left: nothing running, and no FAILED said of a clean exit.
    wait_for(lambda: daemon.status()["clients_connected"] == 0, timeout=30, message="the clients to leave")
    lines, reply = status(socket_path, capsys)
    assert reply["runs_open"] == 0
    assert any(line.endswith("; 0 running in connected processes") for line in lines), lines
    assert "marked FAILED" not in client_line(lines, owner.pid)

