"""What a client's wills may cost the daemon: run ids the store takes, a bound on all wills together,
and log lines that count run ids rather than name each one.

Run ids in ``OwnedRuns`` and ``SpooledWill`` were checked for count (1,000), not form: 200
connections of 1,000 ids of 1,024 characters took a daemon from 27 to 370 MB and its wills file to
196 MB, read back by the next daemon, and each was named in the log. A real daemon, real sockets,
and raw frames where the client's own checks would refuse to build them.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path

import msgpack
import pytest
from helpers import DaemonProcess, RawClient, wait_for

from trackd._paths import DaemonPaths
from trackd._status_text import status_lines
from trackd.protocol import MAX_OWNED_RUNS, ErrorCode, ErrorReply, OwnedRuns, Welcome

# daemon/_will_budget.py's MAX_WILL_RUN_IDS, written out: the test states the bound it checks.
BOUND = 100_000
OWNED_RUNS, SPOOLED_WILL = 15, 17


def frame(*fields: object) -> bytes:
    body: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def hex_ids(count: int) -> tuple[str, ...]:
    return tuple(uuid.uuid4().hex for _ in range(count))


def connected(daemon: DaemonProcess, store: Path, client_id: str) -> RawClient:
    raw = RawClient(daemon.paths.socket)
    assert isinstance(raw.hello(str(store), client_id=client_id), Welcome)
    return raw


def owned(daemon: DaemonProcess, client_id_count: int) -> list[int]:
    """The owned_runs of the connected clients, as status lists them, once it lists ``client_id_count``."""
    clients: list[dict[str, object]] = []

    def listed() -> bool:
        clients[:] = [c for c in daemon.status()["clients"] if c["connected"]]
        return len(clients) == client_id_count

    wait_for(listed, 20, message=f"{client_id_count} connected clients")
    return sorted(int(str(c["owned_runs"])) for c in clients)


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        (OWNED_RUNS, "a" * 1024),  # what the review sent: within MAX_NAME_LENGTH, not a run id
        (OWNED_RUNS, "a" * 256),  # one byte past NAME_MAX: no run folder can have this name
        (OWNED_RUNS, "../../outside"),
        (SPOOLED_WILL, "x" + "é" * 128),  # 129 characters, 257 bytes in UTF-8
        (SPOOLED_WILL, "bad\nrun"),
    ],
)
def test_a_will_naming_a_run_id_the_store_refuses_is_a_protocol_error(
    daemon: DaemonProcess, store: Path, kind: int, bad: str
) -> None:
    raw = connected(daemon, store, "bad-ids")
    try:
        good = uuid.uuid4().hex
        if kind == OWNED_RUNS:
            raw.send_bytes(frame(OWNED_RUNS, [good, bad], ""))
        else:
            raw.send_bytes(frame(SPOOLED_WILL, [good, bad], os.getpid(), None, "test", "", 0))
        [reply] = raw.events_until_closed()
    finally:
        raw.close()
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME, reply
    assert "run_ids[1] must be a run id the store takes" in reply.message and "at most 255 bytes in UTF-8" in reply.message, reply
    assert daemon.status()["protocol_errors"] == 1
    assert "Spool " not in daemon.log()  # no will was made of it


def test_run_ids_the_store_takes_are_held_up_to_the_longest(daemon: DaemonProcess, store: Path) -> None:
    # trackd's own (32 hex), MLflow's longest that a folder can be named (255 bytes), and others the
    # store takes: none of them refused.
    ids = (uuid.uuid4().hex, "a" * 255, "x" + "é" * 127, "Run_1-x", "9")
    raw = connected(daemon, store, "good-ids")
    try:
        raw.send(OwnedRuns(run_ids=ids, spool_path=""))
        assert owned(daemon, 1) == [len(ids)]
    finally:
        raw.close()
    assert daemon.status()["protocol_errors"] == 0


@pytest.mark.timeout(180)
def test_wills_hold_a_bounded_number_of_run_ids_and_a_new_will_keeps_its_newest_that_fit(
    daemon: DaemonProcess, store: Path
) -> None:
    fillers: list[RawClient] = []
    good: RawClient | None = None
    late: list[RawClient] = []
    try:
        # 100 connections own 99,995 runs between them: the bound less 5.
        for number in range(BOUND // MAX_OWNED_RUNS):
            raw = connected(daemon, store, f"filler-{number}")
            raw.send(OwnedRuns(run_ids=hex_ids(MAX_OWNED_RUNS - (5 if number == 0 else 0)), spool_path=""))
            fillers.append(raw)
        assert owned(daemon, len(fillers)) == [MAX_OWNED_RUNS - 5] + [MAX_OWNED_RUNS] * (len(fillers) - 1)
        good = connected(daemon, store, "good")
        good_ids = hex_ids(8)
        good.send(OwnedRuns(run_ids=good_ids, spool_path=""))
        # Its 5 newest runs, and every will held before it whole.
        assert owned(daemon, len(fillers) + 1) == [5, MAX_OWNED_RUNS - 5] + [MAX_OWNED_RUNS] * (len(fillers) - 1)
        for number in range(3):  # more refused: counted, not said again
            late.append(raw := connected(daemon, store, f"late-{number}"))
            raw.send(OwnedRuns(run_ids=hex_ids(10), spool_path=""))
        wait_for(lambda: daemon.status()["will_runs_refused"] == 3 + 30, 20, message="the refused runs counted")
        assert "33 runs not watched: the wills were full (MAX_WILL_RUN_IDS)" in "\n".join(status_lines(daemon.status()))
        said = [line for line in daemon.log().splitlines() if "MAX_WILL_RUN_IDS" in line]
        assert len(said) == 1, said
        assert "hold 99,995 run ids, and it keeps at most 100,000 (MAX_WILL_RUN_IDS): process " in said[0], said
        assert "'s will keeps 5 of its 8 runs (the newest)" in said[0], said
        # The wills file holds the good client's newest runs, and stays the bound's size.
        paths = DaemonPaths(daemon.paths.socket)
        wait_for(lambda: "good" in rows(paths), 20, message="the good client's will in the wills file")
        assert rows(paths)["good"] == list(good_ids[-5:])
        assert paths.wills.stat().st_size < BOUND * 40 + 2_000 * (len(fillers) + 4)
    finally:
        for raw in [*fillers, *late, *([good] if good else [])]:
            raw.close()


def rows(paths: DaemonPaths) -> dict[str, list[str]]:
    """The run ids of each client's will in the wills file (empty while it is being replaced)."""
    try:
        text = paths.wills.read_text()
    except FileNotFoundError:
        return {}
    found: dict[str, list[str]] = {}
    for line in filter(str.strip, text.splitlines()):
        row = json.loads(line)
        found[row["client_id"]] = row["run_ids"]
    return found


def test_a_spooled_will_of_many_runs_is_logged_as_a_count(daemon: DaemonProcess, store: Path) -> None:
    spooled = hex_ids(MAX_OWNED_RUNS)
    raw = connected(daemon, store, "many-runs")
    try:
        # A delivery telling the runs a spool file's process (alive: this one) owned.
        raw.send_bytes(frame(SPOOLED_WILL, list(spooled), os.getpid(), None, "test", "/nowhere.spool", 0))
        wait_for(lambda: "/nowhere.spool names runs" in daemon.log(), 20, message="the spool's will said")
    finally:
        raw.close()
    wait_for(lambda: " disconnected: " in daemon.log(), 20, message="the disconnect line")
    log = daemon.log()
    [line] = [line for line in log.splitlines() if "/nowhere.spool names runs" in line]
    assert f"names runs {', '.join(spooled[:5])} and 995 more, which its process {os.getpid()} owned as it spooled" in line, line
    assert spooled[5] not in log


def test_a_wills_file_naming_run_ids_the_store_refuses_is_read_without_them(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # Written by a daemon that took any id of up to 1,024 characters: the next one read it all back.
    will = {
        "client_id": "c1", "pid": os.getpid(), "started": None, "gone": False, "host": "h", "store_root": str(store),
        "run_ids": [uuid.uuid4().hex], "spool_path": "", "lost_at_ms": 1_700_000_000_000,
    }
    paths.wills.parent.mkdir(parents=True, exist_ok=True)
    paths.wills.write_text(
        json.dumps(will) + "\n" + json.dumps({**will, "client_id": "c2", "run_ids": ["x" * 1024] * 3}) + "\n"
    )
    daemon = DaemonProcess(socket_path).start()
    try:
        wait_for(lambda: "Took on 1 will" in daemon.log(), 20, message="the good will taken on")
        assert daemon.status()["wills_pending"] == 1
        assert "Ignored 1 damaged line in" in daemon.log() and "x" * 300 not in daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()



def test_a_wills_file_naming_more_run_ids_than_the_bound_is_read_up_to_it(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # An older daemon kept any number: 101 wills of 1,000 runs, of a process that runs (this one).
    paths.wills.parent.mkdir(parents=True, exist_ok=True)
    paths.wills.write_text("".join(
        json.dumps({
            "client_id": f"c{number}", "pid": os.getpid(), "started": None, "gone": False, "host": "h",
            "store_root": str(store), "run_ids": list(hex_ids(MAX_OWNED_RUNS)), "spool_path": "", "lost_at_ms": 0,
        }) + "\n"
        for number in range(BOUND // MAX_OWNED_RUNS + 1)
    ))
    daemon = DaemonProcess(socket_path).start()
    try:
        wait_for(lambda: "Took on 100 wills" in daemon.log(), 20, message="the newest wills taken on")
        assert daemon.status()["wills_pending"] == 100
        [line] = [line for line in daemon.log().splitlines() if "MAX_WILL_RUN_IDS" in line]
        assert "holds 101 wills, naming 101,000 run ids, more than the 100,000 a daemon keeps" in line, line
        assert "forgot the 1 oldest" in line, line
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_the_disconnect_line_counts_the_runs_of_a_big_will(daemon: DaemonProcess, store: Path) -> None:
    ids = hex_ids(MAX_OWNED_RUNS)
    raw = connected(daemon, store, "many-owned")
    try:
        raw.send(OwnedRuns(run_ids=ids, spool_path=""))
        assert owned(daemon, 1) == [MAX_OWNED_RUNS]
    finally:
        raw.close()
    wait_for(lambda: " disconnected: " in daemon.log(), 20, message="the disconnect line")
    [line] = [line for line in daemon.log().splitlines() if " disconnected: " in line]
    assert f"it had not ended 1000 runs ({', '.join(ids[:5])} and 995 more): marked FAILED" in line, line
    assert ids[5] not in daemon.log()
