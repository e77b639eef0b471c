"""``trackd daemon status`` tells a job's processes apart and says what each rate is over.

Twelve processes of a job (4 ranks, 2 pool workers each) were 12 lines told apart by pid alone; a
client's rate did not say its window (the header's did), and a client that had left still showed
one (a user review). A real daemon, real ranks (RANK, LOCAL_RANK set by the test as a launcher
sets them) with a fork child each, and the real command, as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from helpers import DaemonProcess, RawClient, child_env, wait_for

from trackd.protocol import PROTOCOL_VERSION, Hello, Welcome

# A rank: starts a fork child (multiprocessing), and each logs to a run of its own, says it is
# connected, and logs until the file named by argv[1] exists; the child of rank 1 leaves first
# (argv[2] == "early"), once its points are written.
JOB = """
import multiprocessing, os, sys, time, trackd

def work(role, leave_early):
    trackd.start_run()
    trackd.log_metric("loss", 0.0, step=0)
    trackd.flush()
    os.write(1, f"{role} {os.getpid()}\\n".encode())  # one write: the parent and its child share the pipe
    if leave_early:
        return
    step = 0
    while not os.path.exists(sys.argv[1]):
        step += 1
        trackd.log_metric("loss", float(step), step=step)
        time.sleep(0.002)

if __name__ == "__main__":
    child = multiprocessing.get_context("fork").Process(target=work, args=("child", sys.argv[2] == "early"))
    child.start()
    work("parent", False)
    child.join()
"""


def status(socket_path: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(socket_path), *args],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class JobStatus(NamedTuple):
    """Status of two ranks and their children, as JSON and as text, once rank 1's child has left."""

    pids: dict[int, tuple[int, int]]  # rank: (its pid, its child's)
    reply: dict[str, Any]
    text: str

    def line(self, pid: int) -> str:
        [line] = [line for line in self.text.splitlines() if f" pid {pid}@" in line]
        return line


@pytest.fixture
def job_status(daemon: DaemonProcess, store: Path, tmp_path: Path) -> JobStatus:
    (tmp_path / "job.py").write_text(JOB)
    stop = tmp_path / "stop"
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    ranks = [
        subprocess.Popen(
            [sys.executable, "job.py", stop.name, "early" if rank == 1 else "stay", "--lr", "0.1"],
            env={**env, "RANK": str(rank), "LOCAL_RANK": "0"}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    try:
        pids: dict[int, tuple[int, int]] = {}
        for rank, job in zip((0, 1), ranks, strict=True):
            assert job.stdout is not None
            lines = [job.stdout.readline() for _ in range(2)]
            said = dict(line.split() for line in lines if len(line.split()) == 2)
            assert said.keys() == {"parent", "child"}, lines
            pids[rank] = int(said["parent"]), int(said["child"])
        early = pids[1][1]  # rank 1's child, which leaves once its first point is written
        wait_for(lambda: not _client(json.loads(status(daemon.paths.socket, "--json")), early)["connected"], timeout=30,
                 message="the daemon to see rank 1's child leave")
        reply = json.loads(status(daemon.paths.socket, "--json"))
        text = status(daemon.paths.socket)
    finally:
        stop.touch()
        for job in ranks:
            _, err = job.communicate(timeout=60)
            assert job.returncode == 0, err
    return JobStatus(pids, reply, text)


def test_status_names_each_process_of_a_job_by_rank_parent_and_command(job_status: JobStatus) -> None:
    reply = job_status.reply
    for rank, (parent, child) in job_status.pids.items():
        for pid in (parent, child):
            entry = _client(reply, pid)
            # The old daemon said none of these: a pid, a host, a store, the same for all 4.
            assert (entry["rank"], entry["local_rank"]) == (str(rank), "0"), entry
            assert entry["command"] == f"python job.py stop {'early' if rank == 1 else 'stay'} --lr 0.1", entry
        assert _client(reply, child)["ppid"] == parent
        ranks_said = "rank 0" if rank == 0 else "rank 1, local rank 0"  # a local rank equal to the rank is said once
        assert f"({ranks_said}; python job.py " in job_status.line(parent), job_status.text
        assert f"({ranks_said}, child of pid {parent}; python job.py " in job_status.line(child), job_status.text


def test_status_says_what_each_rate_is_over_and_none_for_a_client_that_left(job_status: JobStatus) -> None:
    reply, text, pids = job_status.reply, job_status.text, job_status.pids
    # A client that left shows no rate: "gone, 0.6 events/s" read as one still sending.
    gone = _client(reply, pids[1][1])
    assert gone["receive_rate"] is None and gone["rate_span_s"] is None, gone
    gone_line = job_status.line(pids[1][1])
    assert " gone, " in gone_line and "events/s" not in gone_line, text
    # Each connected client's rate says what it is over, as the header's does (it said "N events/s").
    for pid in (*pids[0], pids[1][0]):
        line = job_status.line(pid)
        assert re.search(r" connected, [\d,.]+ events/s over the (last [\d.]+ s|[\d.]+ s since it connected), ", line), line
        assert isinstance(_client(reply, pid)["rate_span_s"], float)
    assert re.search(r"received .*events/s over the last [\d.]+ s\)", text), text


def test_status_names_no_command_for_a_connection_whose_hello_gives_another_pid(daemon: DaemonProcess, store: Path) -> None:
    # As a process delivering another's spool file does (its Hello is the exited process's): the
    # delivering process's command and RANK are not the client's.
    other = os.getppid()
    raw = RawClient(daemon.paths.socket)
    try:
        raw.send(Hello(protocol_version=PROTOCOL_VERSION, client_id="another", pid=other, host="test", store_root=str(store)))
        assert isinstance(raw.next_event(), Welcome)
        mine = RawClient(daemon.paths.socket)
        try:
            assert isinstance(mine.hello(str(store), client_id="mine"), Welcome)
            wait_for(lambda: _client(json.loads(status(daemon.paths.socket, "--json")), os.getpid())["command"] is not None,
                     timeout=30, message="the daemon to read this process's command")
            reply = json.loads(status(daemon.paths.socket, "--json"))
        finally:
            mine.sock.close()
    finally:
        raw.sock.close()
    entry = _client(reply, other)
    assert (entry["command"], entry["rank"], entry["ppid"]) == (None, None, None), entry


def _client(reply: dict[str, Any], pid: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [client for client in reply["clients"] if client["pid"] == pid]
    [entry] = entries
    return entry

