"""The store's (or the spool's) disk fills up: the daemon keeps the events, says so, and writes them once space returns."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, create_run_record, fill, metric_records, mounted_tmpfs, wait_for

from trackd._paths import UNWRITTEN_EXIT_CODE, DaemonPaths
from trackd.protocol import (
    Ack, Batch, ConnectionClosed, ErrorReply, Flush, FlushDone, GetStatus, RecordKind, Rejected, StatusReply, Welcome,
)
from trackd.store import StoreReader
from trackd.store._layout import temp_file_path

POINTS = 60_000
FILL_AT_STEP = 10_000

# Streams POINTS points of "x" (about 20,000 a second), printing its progress, then flushes.
PRODUCER = """
import sys, time, trackd
run_id, points = sys.argv[1], int(sys.argv[2])
trackd.start_run(run_id=run_id)
for step in range(points):
    trackd.log_metric("x", float(step), step=step)
    if step % 1000 == 999:
        print("step", step, flush=True)
        time.sleep(0.05)
report = trackd.flush(timeout=120)
print("done", report.pending, flush=True)
"""


def status_text(socket_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "daemon", "status", "--socket", str(socket_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_full_disk_keeps_every_event_and_writes_it_once_space_returns(small_disk: Path, daemon: DaemonProcess) -> None:
    store = small_disk / "mlruns"
    run_id = uuid.uuid4().hex
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, run_id, str(POINTS)],
        env=child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(line.strip() for line in producer.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    filler = small_disk / "filler"
    try:
        wait_for(lambda: any(line == f"step {FILL_AT_STEP - 1}" for line in out) or producer.poll() is not None, 60, message="the producer streaming")
        wait_for(lambda: (store / "0" / run_id / "metrics" / "x").exists(), 10, message="the first points written")
        fill(filler)
        wait_for(lambda: daemon.status()["write_errors"], 30, message="the daemon to meet the full disk")
        status = status_text(daemon.paths.socket)
        assert "cannot be written (No space left on device)" in status, status
        # The producer logs on while the disk stays full; the daemon holds the events and retries.
        wait_for(lambda: producer.poll() is not None or any(line == "step 40999" for line in out), 60, message="more points logged onto the full disk")
        assert daemon.process is not None and daemon.process.poll() is None, daemon.log()
        filler.unlink()
        producer.wait(timeout=120)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait(10)
        filler.unlink(missing_ok=True)
        reader.join(10)
        assert producer.stdout is not None and producer.stderr is not None
        err = producer.stderr.read()  # a few lines at most: the pipe never fills
        producer.stdout.close()
        producer.stderr.close()
    assert producer.returncode == 0, err
    assert out[-1] == "done 0", err
    # The client was told once, on its stderr, why its events were waiting.
    told = [line for line in err.splitlines() if "No space left on device" in line]
    assert len(told) == 1, err
    steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "x")]
    assert steps == list(range(POINTS)), "points lost, duplicated or out of order across the full disk"
    assert daemon.process is not None and daemon.process.poll() is None, "the daemon exited"


@pytest.mark.timeout(150)
def test_stop_on_a_full_disk_says_how_many_events_were_not_written_and_their_client_resends_them(
    small_disk: Path, paths: DaemonPaths
) -> None:
    # The daemon's log said "135556 records could not be written in time" while `trackd daemon stop`
    # said it "stopped after writing everything it had received", and exited 0 (and so did the daemon).
    store = small_disk / "mlruns"
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(paths.socket).start()
    # The producer's client starts the next daemon by itself (TRACKD_AUTOSTART=1) and resends.
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, run_id, "20000"],
        env=child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    filler = small_disk / "filler"
    try:
        wait_for(lambda: (store / "0" / run_id / "metrics" / "x").exists() or producer.poll() is not None, 60, message="the first points written")
        fill(filler)
        wait_for(lambda: daemon.status()["backlog_records"] > 0 and daemon.status()["write_errors"] > 0, 60, message="events waiting on the full disk")
        stop = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", str(paths.socket)],
            capture_output=True, text=True, timeout=60,
        )
        assert daemon.stop() == UNWRITTEN_EXIT_CODE, daemon.log()
        logged = re.search(r"(\d+) events? could not be written in time", daemon.log())
        assert logged is not None, daemon.log()
        assert stop.returncode == UNWRITTEN_EXIT_CODE, stop.stdout + stop.stderr
        assert "stopped after writing everything" not in stop.stdout
        assert f"{logged.group(1)} events it had received were not written in time" in stop.stderr, stop.stderr
        assert "the clients that sent them still hold them and send them to the next daemon" in stop.stderr
        filler.unlink()
        out, err = producer.communicate(timeout=120)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate(timeout=10)
        filler.unlink(missing_ok=True)
    assert producer.returncode == 0 and out.splitlines()[-1] == "done 0", err
    steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "x")]
    assert steps == list(range(20_000)), "the events the stopped daemon did not write were not resent exactly once"


# Logs FIRST points and flushes them, says "ready", waits for a line on stdin (the disk is full
# by then), logs the rest and flushes.
HELD_PRODUCER = """
import sys, trackd
run_id, first, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
trackd.start_run(run_id=run_id)
for step in range(points):
    if step == first:
        trackd.flush(timeout=30)
        print("ready", flush=True)
        sys.stdin.readline()
    trackd.log_metric("x", float(step), step=step)
report = trackd.flush(timeout=120)
print("done", report.pending, flush=True)
"""

# Logs rounds of 1000 points, flushing after each; prints the seconds its flushes took.
FLUSHING_PRODUCER = """
import sys, time, trackd
run_id, rounds = sys.argv[1], int(sys.argv[2])
trackd.start_run(run_id=run_id)
waited = 0.0
for step in range(rounds * 1000):
    trackd.log_metric("x", float(step), step=step)
    if step % 1000 == 999:
        started = time.perf_counter()
        trackd.flush(timeout=60)
        waited += time.perf_counter() - started
print(waited, flush=True)
"""


def test_a_full_store_holds_back_only_its_own_events_and_other_stores_flush_at_once(
    small_disk: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    # The backoff used to be the daemon's: the other store's five flushes took 0.5 to 10 s each
    # (waiting out the full store's backoff), its client was told of the full store with the full
    # store's count, and each write to it was logged as the full store's recovery, then the full
    # store's failure again.
    full, other = small_disk / "mlruns", tmp_path / "mlruns"
    full_run, other_run = uuid.uuid4().hex, uuid.uuid4().hex
    held = subprocess.Popen(
        [sys.executable, "-c", HELD_PRODUCER, full_run, "1000", "21000"],
        env=child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(full)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    filler = small_disk / "filler"
    try:
        assert held.stdin is not None and held.stdout is not None
        assert held.stdout.readline() == "ready\n"
        fill(filler)
        held.stdin.write("go\n")
        held.stdin.flush()
        wait_for(lambda: daemon.status()["write_errors"], 30, message="the daemon to meet the full disk")
        flushing = subprocess.run(
            [sys.executable, "-c", FLUSHING_PRODUCER, other_run, "5"],
            env=child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(other)), capture_output=True, text=True, timeout=60,
        )
        filler.unlink()
        out, err = held.communicate(timeout=120)
    finally:
        if held.poll() is None:
            held.kill()
            held.communicate()
        filler.unlink(missing_ok=True)
    assert flushing.returncode == 0 and flushing.stderr == "", flushing.stderr
    assert float(flushing.stdout) < 1.0, f"the other store's 5 flushes took {flushing.stdout.strip()} s"
    assert [m.step for m in StoreReader(other).get_metric_history(other_run, "x")] == list(range(5000))
    assert held.returncode == 0 and out.splitlines()[-1] == "done 0", err
    told = [line for line in err.splitlines() if line.startswith("trackd:")]
    assert len(told) == 1 and "No space left on device" in told[0] and "None" not in told[0], err
    steps = [m.step for m in StoreReader(full).get_metric_history(full_run, "x")]
    assert steps == list(range(21000)), "points lost, duplicated or out of order across the full disk"
    log = daemon.log()
    assert log.count(f"The store at {full} cannot be written") == 1, log
    assert log.count(f"The store at {full} accepts writes again") == 1, log


def test_a_record_refused_in_a_batch_the_full_disk_holds_back_is_reported_once(small_disk: Path, daemon: DaemonProcess) -> None:
    # Refusals found before the write were sent again at every retry of the held batch: the
    # client got Rejected once per attempt and events_rejected grew with each.
    store = small_disk / "mlruns"
    run_id = uuid.uuid4().hex
    bad = (RecordKind.METRIC_SERIES.value, run_id, "../escape", (1.0, 2.0, 3.0), (1000, 1000, 1000), (0, 1, 2))
    raw = RawClient(daemon.paths.socket, timeout=30.0)
    filler = small_disk / "filler"
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id)]))
        assert raw.next_event() == Ack(seq=1)
        fill(filler)
        raw.send(Batch(seq=2, records=[*metric_records(run_id, "loss", 500), bad]))
        wait_for(lambda: daemon.status()["write_errors"] >= 3, 30, message="three refused attempts")
        filler.unlink()
        events: list[object] = []
        while not events or events[-1] != Ack(seq=2):
            events.append(raw.next_event())
    finally:
        raw.close()
        filler.unlink(missing_ok=True)
    rejected = [event for event in events if isinstance(event, Rejected)]
    assert len(rejected) == 1 and rejected[0].events == 3, events
    assert daemon.status()["events_rejected"] == 3
    assert len(StoreReader(store).get_metric_history(run_id, "loss")) == 500


def test_flush_barriers_sent_again_after_a_reconnect_wait_once(small_disk: Path, daemon: DaemonProcess) -> None:
    # A reconnecting client sends every barrier still unanswered again; each took a second place
    # among those waiting, so 600 barriers held behind a full disk and one reconnect went over
    # the limit of 1024, and the connection was closed.
    store = small_disk / "mlruns"
    run_id = uuid.uuid4().hex
    filler = small_disk / "filler"
    first = RawClient(daemon.paths.socket, timeout=30.0)
    try:
        assert isinstance(first.hello(str(store), client_id="c"), Welcome)
        first.send(Batch(seq=1, records=[create_run_record(run_id)]))
        assert first.next_event() == Ack(seq=1)
        fill(filler)
        first.send(Batch(seq=2, records=metric_records(run_id, "loss", 500)))
        for _ in range(2):  # the client's connection breaks, and it sends its barriers again
            again = RawClient(daemon.paths.socket, timeout=30.0)
            first.close()
            first = again
            assert isinstance(first.hello(str(store), client_id="c"), Welcome)
            first.send_bytes(b"".join(first.protocol.send(Flush(request_id=request_id)) for request_id in range(1, 601)))
            first.send(GetStatus(request_id=601))  # answered once every barrier before it was read
            events: list[object] = []
            while not events or not isinstance(events[-1], (StatusReply, ConnectionClosed)):
                events.append(first.next_event())
            assert not [event for event in events if isinstance(event, ErrorReply) and event.code != "store_unavailable"], events
        filler.unlink()
        done: set[int] = set()
        while len(done) < 600:
            event = first.next_event()
            if isinstance(event, FlushDone):
                done.add(event.request_id)
    finally:
        first.close()
        filler.unlink(missing_ok=True)
    assert done == set(range(1, 601))
    assert len(StoreReader(store).get_metric_history(run_id, "loss")) == 500


@pytest.mark.timeout(150)
def test_a_daemon_killed_after_a_full_disk_passed_keeps_what_it_wrote_since(small_disk: Path, paths: DaemonPaths) -> None:
    # This used to cut the metric file back to its size before the full disk at the next daemon's
    # start: the write the disk refused stayed "begun" in the journal, never committed, and recovery
    # undid it, and with it every acknowledged write to that file since. Found by chaos testing
    # (18,000 points of a spool `trackd sync` had delivered were gone after a daemon SIGKILL).
    store = small_disk / "mlruns"
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(paths.socket).start()
    producer = subprocess.Popen(
        [sys.executable, "-c", HELD_PRODUCER, run_id, "1000", "3000"],
        env=child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert producer.stdin is not None and producer.stdout is not None
    filler = small_disk / "filler"
    try:
        assert producer.stdout.readline().strip() == "ready", daemon.log()
        fill(filler)
        producer.stdin.write("go\n")
        producer.stdin.flush()
        wait_for(lambda: daemon.status()["write_errors"] > 0, 60, message="the daemon to meet the full disk")
        filler.unlink()
        out, err = producer.communicate(timeout=120)
        assert producer.returncode == 0 and out.split() == ["done", "0"], err
        daemon.kill()
        DaemonProcess(paths.socket).start().stop()  # its start recovers from the journal
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate(timeout=10)
        filler.unlink(missing_ok=True)
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "x")]
    assert steps == list(range(3000)), "points written after the full disk passed were cut at the next start"


# Logs a point every 10 ms until file argv[1] exists, then logs argv[2] more and closes.
UNTIL_FILE = """
import os, sys, time, trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
print("run", run_id, flush=True)
step = 0
while not os.path.exists(sys.argv[1]):
    client.log_metric(run_id, "x", float(step), None, step)
    step += 1
    time.sleep(0.01)
for _ in range(int(sys.argv[2])):
    client.log_metric(run_id, "x", float(step), None, step)
    step += 1
client.close()
print("logged", step, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_spool_the_full_disk_refused_leaves_no_file_that_trackd_sync_calls_undelivered(
    small_disk: Path, socket_path: Path, tmp_path: Path
) -> None:
    # This used to leave an empty spool file after the client had delivered every event to the
    # daemon that came back; every later `trackd sync` printed "not delivered: ... is empty or
    # damaged" and exited 1. Found by chaos testing.
    spool_dir, store, go = small_disk / "spool", tmp_path / "mlruns", tmp_path / "go"
    fill(small_disk / "filler")
    child = subprocess.Popen(
        [sys.executable, "-c", UNTIL_FILE, str(go), "1000"],
        env=child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
                      TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.3"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    daemon: DaemonProcess | None = None
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        while line and "could not spool events" not in line:
            line = child.stderr.readline()
        assert "No space left on device" in line, line
        daemon = DaemonProcess(socket_path).start()
        go.touch()
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert list(spool_dir.iterdir()) == []
        sync = subprocess.run(
            [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert sync.returncode == 0 and "Nothing to deliver" in sync.stdout, sync.stdout + sync.stderr
        run_id, logged = out.split()[1], int(out.split()[3])
        assert [m.step for m in StoreReader(store).get_metric_history(run_id, "x")] == list(range(logged))
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
        if daemon is not None:
            daemon.stop()


def test_trackd_sync_removes_an_empty_spool_file_and_says_so(daemon: DaemonProcess, tmp_path: Path) -> None:
    # Left by a process killed between creating its spool and writing the first frame, or by an
    # older trackd on a full disk: it holds nothing, and used to fail every `trackd sync`.
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "0123456789abcdef0123456789abcdef.spool").touch()
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    assert "removed, empty" in sync.stdout
    assert list(spool_dir.iterdir()) == []


@pytest.mark.timeout(120)
def test_a_disk_full_before_a_stores_first_write_holds_the_events_until_space_returns(
    small_disk: Path, daemon: DaemonProcess
) -> None:
    # This used to refuse every batch for good ("The daemon refused 3 logged item(s), 1002 events:
    # batch: The store ... could not be written: [Errno 28]"): making the store's folders on a full
    # disk raised a plain OSError, taken for a store that failed as a whole, not for a full disk.
    # Found by chaos testing (every producer of seed 72 lost everything, reported as refused).
    store = small_disk / "mlruns"
    filler = small_disk / "filler"
    fill(filler)
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, uuid.uuid4().hex, "1000"],
        env=child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: daemon.status()["write_errors"] > 0 or producer.poll() is not None, 60, message="the full disk met")
        filler.unlink()
        out, err = producer.communicate(timeout=60)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate(timeout=10)
        filler.unlink(missing_ok=True)
    assert producer.returncode == 0 and out.split()[-2:] == ["done", "0"], err
    assert "refused" not in err, err
    (run_dir,) = (store / "0").glob("*/metrics")
    assert len((run_dir / "x").read_text().splitlines()) == 1000


@pytest.fixture
def journal_disk(socket_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on the socket's folder: the write journal beside the socket fills up
    (in $XDG_RUNTIME_DIR, or /tmp on the store's disk), the store does not."""
    folder = socket_path.parent
    with mounted_tmpfs(folder, "size=1m,mode=0700"):
        yield folder


# tmpfs gives a file its space page by page: on a full disk, a write() that crosses into a page it
# cannot get writes up to the page's end and returns short, without an error.
PAGE = 4096


def _journal_line_sizes(journal: bytes, folder: str, key: str, seq: int) -> tuple[int, int]:
    """The bytes of the begin and commit lines of the daemon's next write: one new metric file ``key``."""
    entry = journal.count(b'{"begin":') + 1  # this daemon's writes are numbered from 1
    path = f"{folder}/{key}"
    # A new file's first lines go to a temp file in the run folder, which the line names (its
    # name is random, its length is not).
    temps = {path: temp_file_path(os.path.dirname(folder))}
    begin = json.dumps({"begin": entry, "files": [[path, 0]], "seqs": {"c1": seq}, "temps": temps}, separators=(",", ":"))
    return len(begin) + 1, len(json.dumps({"commit": entry}, separators=(",", ":"))) + 1


@pytest.mark.timeout(120)
def test_a_commit_the_full_disk_cut_short_is_not_taken_for_written(journal_disk: Path, paths: DaemonPaths, tmp_path: Path) -> None:
    # Found while chaos-testing full disks: the journal's commit line crossed into a page the disk could not
    # give, write() returned short, the daemon took the write as committed and acknowledged it, and
    # the next daemon's start found the last write's commit unreadable and cut its points back.
    store = tmp_path / "mlruns"
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(paths.socket).start()
    raw = RawClient(paths.socket, timeout=30.0)
    filler = journal_disk / "filler"
    seq = 1

    def write(key: str, points: int = 1) -> None:
        nonlocal seq
        seq += 1
        raw.send(Batch(seq=seq, records=metric_records(run_id, key, points)))

    try:
        assert isinstance(raw.hello(str(store), client_id="c1"), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id)]))
        assert raw.next_event() == Ack(seq=1)
        write("x")
        assert raw.next_event() == Ack(seq=seq)
        folder = os.path.dirname(json.loads(paths.journal.read_bytes().splitlines()[-2])["files"][0][0])
        # Writes of one new metric file each, their keys' lengths chosen so that the next write's
        # begin line ends 3 bytes before a page's end: its commit line crosses into the next page.
        for n in range(100):
            journal = paths.journal.read_bytes()
            begin, commit = _journal_line_sizes(journal, folder, "loss", seq + 1)
            room = -len(journal) % PAGE
            if begin < room < begin + commit:
                break
            pad_begin, pad_commit = _journal_line_sizes(journal, folder, f"p{n}_", seq + 1)
            begin_after, _ = _journal_line_sizes(journal + b'{"begin":', folder, "loss", seq + 2)
            wanted = room - begin_after - 3
            if wanted < pad_begin + pad_commit:
                wanted += PAGE
            # Each letter of the key is in the begin line twice: in "files" and in "temps".
            write(f"p{n}_" + "a" * min(max(wanted - pad_begin - pad_commit, 0) // 2, 200))
            assert raw.next_event() == Ack(seq=seq)
        else:
            pytest.fail("could not place a commit line across a page boundary")
        fill(filler)
        write("loss", 3)
        # The old daemon acknowledged it at once; now the disk refuses it until space returns.
        raw.sock.settimeout(0.1)
        acked = False
        while not acked and daemon.status()["write_errors"] == 0:
            with contextlib.suppress(TimeoutError):
                acked = raw.next_event() == Ack(seq=seq)
        raw.sock.settimeout(30.0)
        filler.unlink()
        if not acked:
            assert raw.next_event() == Ack(seq=seq)
        raw.close()
        daemon.kill()
        DaemonProcess(paths.socket).start().stop()  # its start recovers from the journal
    finally:
        filler.unlink(missing_ok=True)
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
    assert steps == [0, 1, 2], "an acknowledged write was cut back at the next daemon's start"


@pytest.mark.timeout(120)
def test_a_daemon_whose_journal_folder_is_full_says_so_in_one_line_and_changes_nothing(
    journal_disk: Path, paths: DaemonPaths
) -> None:
    # The journal's snapshot at start could not be written: the daemon died with a traceback and
    # left an empty trackd.sock.journal.tmp behind (chaos test of full disks).
    paths.journal.write_bytes(b'{"snapshot":{"c1":7}}\n')
    fill(journal_disk / "filler")
    result = subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--socket", str(paths.socket)], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"trackd: Cannot start on {paths.socket}: the write journal {paths.journal} cannot be written (No space left on device)"
        in result.stderr
    ), result.stderr
    assert paths.journal.read_bytes() == b'{"snapshot":{"c1":7}}\n'
    assert not paths.journal.with_name(paths.journal.name + ".tmp").exists()


@pytest.mark.timeout(60)
def test_a_daemon_whose_journal_cannot_be_read_says_read_not_written(paths: DaemonPaths) -> None:
    # A journal that could not be read (EIO on read; here a folder where the file should be) was
    # said to be one that "cannot be written", and users went looking for a full disk.
    paths.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.journal.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--socket", str(paths.socket)], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert (
        f"trackd: Cannot start on {paths.socket}: the write journal {paths.journal} cannot be read (Is a directory)"
        in result.stderr
    ), result.stderr
    assert paths.journal.is_dir()
