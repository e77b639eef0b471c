"""No daemon can be reached: events go to a spool file and reach the store later, exactly once."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, create_run_record, metric_records, run_python, wait_for

from trackd import Client, ClientConfig, DeliveryError
from trackd.client._delivery import sync_spools
from trackd.client._spool import SpoolReader, _names
from trackd.errors import DaemonUnavailable
from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, Record, RecordKind, encode_frame
from trackd.store import StoreReader

POINTS = 10_000

LOGGER = """
import trackd
with trackd.start_run() as run:
    print(run.run_id, flush=True)
    trackd.log_param("lr", "0.1")
    for step in range({points}):
        trackd.log_metric("loss", float(step), step=step)
"""


def _spool_files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.spool")) if spool_dir.is_dir() else []


@pytest.mark.timeout(120)
def test_events_are_spooled_when_no_daemon_can_start_and_trackd_sync_delivers_them(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # A file where the runtime directory should be: no daemon can ever start there.
    blocker = Path(str(socket_path.parent) + "-blocker")
    blocker.write_text("not a directory")
    spool_dir = tmp_path / "spool"
    env = child_env(
        blocker / "d.sock", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="1",
    )
    try:
        result = run_python(LOGGER.format(points=POINTS), env)
    finally:
        blocker.unlink()
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[0]
    # end_run gives the daemon up as soon as an attempt finds none and starts none: one line.
    assert "events were not delivered: no daemon answers at" in result.stderr and "spooled to" in result.stderr
    assert len(_spool_files(spool_dir)) == 1
    assert StoreReader(store).find_run(run_id) is None

    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
        env=child_env(socket_path), capture_output=True, text=True, timeout=60,
    )
    try:
        assert sync.returncode == 0, sync.stderr
        assert "delivered" in sync.stdout
        assert _spool_files(spool_dir) == []
        run = StoreReader(store).get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params == {"lr": "0.1"}
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(POINTS))
    finally:
        subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", str(socket_path)], timeout=60)


@pytest.mark.timeout(120)
def test_a_running_process_delivers_its_own_spool_when_a_daemon_appears(socket_path: Path, store: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    code = """
import sys, time, trackd
with trackd.start_run() as run:
    print(run.run_id, flush=True)
    for step in range(30_000):
        trackd.log_metric("loss", float(step), step=step)
        if step % 1000 == 999:
            time.sleep(0.1)
    trackd.flush(timeout=60)
    print("flushed", flush=True)
"""
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir),
                    TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_AUTOSTART="0")
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[0]
    wait_for(lambda: bool(_spool_files(spool_dir)), 30, message="the child to spool")
    time.sleep(0.5)
    daemon = DaemonProcess(socket_path).start()
    try:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0 and "flushed" in out, err
        steps = [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]
        assert steps == list(range(30_000))
        assert _spool_files(spool_dir) == []
    finally:
        if child.poll() is None:
            child.kill()
        assert daemon.stop() == 0


def test_a_spool_written_by_an_older_protocol_version_is_delivered_after_an_upgrade(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to be refused with version_mismatch for ever: the spool's own Hello was replayed.
    run_id = "0123456789abcdef0123456789abcdef"
    hello = Hello(protocol_version=1, client_id="old-client", pid=1, host=socket.gethostname(), store_root=str(store))
    # Protocol 2's SET_TERMINATED had no keep_failure field.
    ended = (RecordKind.SET_TERMINATED.value, run_id, 3, 1_700_000_000_000)
    batch = Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 5), ended])
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "old-client.spool").write_bytes(encode_frame(hello) + encode_frame(batch))
    (result,) = sync_spools(spool_dir, daemon.paths.socket, timeout=30)
    assert result.error is None and result.batches == 1, result
    assert _spool_files(spool_dir) == []
    assert [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")] == list(range(5))
    assert StoreReader(store).get_run(run_id).info.status == "FINISHED"


def _old_spool(
    spool_dir: Path, store: Path, run_id: str, host: str | None = None, client_id: str = "gone",
    records: list[Record] | None = None,
) -> Path:
    """A spool file left by an exited process: its Hello, then one batch creating ``run_id`` and
    logging 3 points of "loss" (or, after the creation, ``records``)."""
    spool_dir.mkdir(exist_ok=True)
    hello = Hello(
        protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=1,
        host=socket.gethostname() if host is None else host, store_root=str(store),
    )
    logged = metric_records(run_id, "loss", 3) if records is None else records
    batch = Batch(seq=1, records=[create_run_record(run_id), *logged])
    path = spool_dir / f"{client_id}.spool"
    path.write_bytes(encode_frame(hello) + encode_frame(batch))
    return path


def _env(daemon: DaemonProcess, store: Path, spool_dir: Path) -> dict[str, str]:
    """A child's environment: ``daemon``'s socket, ``store`` and the spool folder ``spool_dir``."""
    return child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir))


# A process that lives until a spool left by another is gone (delivered in its background), then ``after`` s more.
_LOGS_UNTIL_GONE = """
import os, time, trackd
with trackd.start_run():
    trackd.log_metric('x', 1.0)
    deadline = time.monotonic() + 30
    while os.path.exists({path!r}) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep({after})
"""


@pytest.mark.timeout(120)
def test_a_process_that_runs_a_while_delivers_spools_left_by_others_and_a_short_one_does_not_pay(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    run_id = "fedcba9876543210fedcba9876543210"
    spool_dir = tmp_path / "spool"
    orphan = _old_spool(spool_dir, store, run_id)
    env = _env(daemon, store, spool_dir)
    short = run_python("import trackd\nwith trackd.start_run():\n    trackd.log_metric('x', 1.0)\n", env)
    assert short.returncode == 0, short.stderr
    assert orphan.exists()  # left for a process that lives long enough (ORPHAN_DELIVERY_DELAY)
    long = run_python(_LOGS_UNTIL_GONE.format(path=str(orphan), after=0), env)
    assert long.returncode == 0, long.stderr
    assert not orphan.exists()
    assert [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")] == [0, 1, 2]


@pytest.mark.timeout(120)
def test_items_the_store_refuses_in_a_spool_left_by_another_process_are_said_by_the_one_delivering_it(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The process that logged them is gone; the process delivering its spool in the background
    # said nothing of what the store refused, which only the daemon status's counter showed.
    run_id = "abcdefabcdefabcdefabcdefabcdef12"
    spool_dir = tmp_path / "spool"
    orphan = _old_spool(spool_dir, store, run_id, records=[(RecordKind.DELETE_TAG.value, run_id, "never-set")])
    env = _env(daemon, store, spool_dir)
    long = run_python(_LOGS_UNTIL_GONE.format(path=str(orphan), after=1), env)  # the line comes after the removal
    assert long.returncode == 0, long.stderr
    assert not orphan.exists()
    [line] = [line for line in long.stderr.splitlines() if "of an exited process" in line]
    assert line.startswith(f"trackd: delivered the spool {orphan} of an exited process; the store refused 1 item in it: ")
    assert "never-set" in line


UNSPOOLABLE = """
import time
import trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
for second in range(60):
    for step in range(1000):
        client.log_metric(run_id, "loss", 0.5, None, second * 1000 + step)
    time.sleep(0.05)
print(client.pending(), client.stats()["dropped"], flush=True)
client.close(timeout=0.5)
"""


@pytest.mark.timeout(120)
def test_events_held_in_memory_when_the_spool_cannot_be_written_stay_within_the_buffer_bound(
    socket_path: Path, tmp_path: Path
) -> None:
    # No daemon can start (a file where its folder should be) and the spool folder is a file too:
    # every retry used to move the whole buffer into memory beside it, past the on-full bound.
    blocker = Path(str(socket_path.parent) + "-blocker")
    blocker.write_text("not a directory")
    spool_file = tmp_path / "spool"
    spool_file.write_text("not a directory")
    env = child_env(
        blocker / "d.sock", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"), TRACKD_SPOOL_DIR=str(spool_file),
        TRACKD_CONNECT_TIMEOUT="0.3", TRACKD_MAX_BUFFERED="1000", TRACKD_ON_FULL="drop",
    )
    try:
        result = run_python(UNSPOOLABLE, env)
    finally:
        blocker.unlink()
    assert result.returncode == 0, result.stderr
    pending, dropped = (int(x) for x in result.stdout.split())
    # The buffer's bound, plus one buffer's worth cut into batches before the spool failed.
    assert pending <= 2 * 1000 + 1
    assert pending + dropped == 60_000 + 1  # the run's creation is an event too: none vanishes uncounted
    assert result.stderr.count("could not spool events") == 1
    # The close says, once, how many events it loses: it said nothing (believing them spooled), and
    # then "held in memory and sent when a daemon answers" of events nothing would send any more.
    lost = re.findall(r"trackd: (\d+) events are lost: no daemon answers at .*, and they could not be spooled to ", result.stderr)
    assert lost == [str(pending)], result.stderr
    assert "sent when a daemon answers" not in result.stderr


SPOOL_ON_A_FULL_DISK = """
import os, resource, signal, sys, uuid
from pathlib import Path
from trackd.client._spool import Spool
from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, encode_frame
# A file size limit of 8 bytes stands in for a full disk: the Hello frame does not fit.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=uuid.uuid4().hex, pid=os.getpid(), host="h", store_root="/tmp/mlruns")
spool = Spool(Path(sys.argv[1]), hello)
batch = (1, encode_frame(Batch(seq=1, records=[(1, "r" * 32, "loss", 0.5, 1, 0)])), 1)
for attempt in range(3):
    try:
        spool.append([batch])
    except OSError as exc:
        print(attempt, exc.errno, spool.path.exists(), flush=True)
"""


@pytest.mark.timeout(60)
def test_a_spool_file_that_cannot_take_its_hello_is_removed_and_unlocked(tmp_path: Path) -> None:
    # The descriptor used to stay open holding the file's lock, so the next try's flock() waited
    # for ever: a full disk while no daemon answered hung the sender thread. The empty file it
    # then left made every `trackd sync` fail (see tests/test_faults_disk.py).
    result = subprocess.run(
        [sys.executable, "-c", SPOOL_ON_A_FULL_DISK, str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] + " " + line.split()[2] for line in result.stdout.splitlines()] == ["0 False", "1 False", "2 False"]


def test_a_spool_written_on_another_host_is_left_alone_unless_all_hosts(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # A home folder shared over NFS: every node sees every node's spools. Delivering one here
    # wrote its events to this node's copy of a path that may be the other node's scratch disk.
    spool_dir = tmp_path / "spool"
    here_run, there_run = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    _old_spool(spool_dir, store, here_run, client_id="here")
    there = _old_spool(spool_dir, store, there_run, host="other-node.example", client_id="there")
    cli = [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)]
    first = subprocess.run(cli, env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert f"{there}: left alone, written on host other-node.example" in first.stdout
    assert _spool_files(spool_dir) == [there]
    reader = StoreReader(store)
    assert reader.find_run(here_run) is not None and reader.find_run(there_run) is None
    second = subprocess.run([*cli, "--all-hosts"], env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "delivered 4 events (1 batch) of client there" in second.stdout, second  # it said "1 batches"
    assert _spool_files(spool_dir) == []
    assert [m.step for m in StoreReader(store).get_metric_history(there_run, "loss")] == [0, 1, 2]


@pytest.mark.timeout(60)
def test_a_spool_file_removed_by_hand_loses_only_its_own_events_and_says_how_many(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # This used to fail every reconnect (FileNotFoundError in the sender thread): nothing logged
    # after the removal reached the store, and each flush timed out blaming a healthy daemon.
    spool_dir = tmp_path / "spool"
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=spool_dir)
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        for step in range(100):
            client.log_metric(run_id, "loss", float(step), step=step)
        with pytest.raises(DaemonUnavailable, match="101 events are spooled"):
            client.flush(timeout=30)
        for path in _spool_files(spool_dir):
            path.unlink()  # a cache cleaner
        daemon = DaemonProcess(socket_path).start()
        try:
            later_run = client.create_run("0").info.run_id
            client.log_metric(later_run, "loss", 0.5, step=0)
            with pytest.raises(DeliveryError, match=r"101 events spooled to .* could not be read back .* and are lost"):
                client.flush(timeout=30)
            assert client.stats()["rejected"] == 101 and client.stats()["spooled"] == 0
            assert [m.value for m in client.get_metric_history(later_run, "loss")] == [0.5]
        finally:
            client.close()
            assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_trackd_sync_to_a_daemon_that_stops_reading_gives_up_within_its_timeout(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # This used to hang for ever: the sends had no bound, only the wait for the daemon's answer.
    run_id = "0123456789abcdef0123456789abcdef"
    spool_dir = tmp_path / "spool"
    path = _old_spool(spool_dir, store, run_id)
    with path.open("ab") as spool:  # ~30 MB: far more than the socket holds
        for seq in range(2, 100):
            spool.write(encode_frame(Batch(seq=seq, records=metric_records(run_id, f"k{seq}", 5000))))
    sync = subprocess.Popen(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir), "--timeout", "2"],
        env=child_env(daemon.paths.socket), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: any(c["received_seq"] >= 2 for c in daemon.status()["clients"]), 30, message="the first batches")
        daemon.signal(signal.SIGSTOP)
        out, err = sync.communicate(timeout=30)
    finally:
        daemon.signal(signal.SIGCONT)
        if sync.poll() is None:
            sync.kill()
    assert sync.returncode == 1 and "read nothing for 2 s" in out + err, out + err
    assert _spool_files(spool_dir) == [path]  # left for the next try


def test_a_spool_made_anew_at_a_path_sync_opened_before_is_not_taken_for_the_old_one(tmp_path: Path) -> None:
    # A client that removed its delivered spool and spooled again made a new file at the same
    # path; a `trackd sync` that had opened the old one got its lock once the client let it go,
    # then read and deleted the new file by path, and the client went on spooling into a deleted
    # file. The race is microseconds wide, so the check it now makes is tested on its own.
    path = tmp_path / "c.spool"
    path.write_bytes(b"old")
    opened = os.open(path, os.O_RDONLY)
    try:
        assert _names(path, opened)
        path.unlink()
        assert not _names(path, opened)
        path.write_bytes(b"new")
        assert not _names(path, opened)
    finally:
        os.close(opened)


def _undecodable_batch(seq: int, run_id: str) -> Batch:
    """A batch no daemon can decode: an artifact record whose stamp the call site failed to check."""
    return Batch.of_checked_records(seq, [(RecordKind.ARTIFACT.value, run_id, "w.bin", None, "/tmp/w.bin", (1, "x"))], 1)


def _the_failure_the_next_flush_reports(client: Client) -> str:
    """The one item that ``client.flush()`` reports will not be written (it raises DeliveryError)."""
    with pytest.raises(DeliveryError) as caught:
        client.flush(timeout=60)
    (failure,) = caught.value.failures
    return failure


@pytest.mark.timeout(120)
@pytest.mark.parametrize("alone", [False, True], ids=["between-others", "alone"])
def test_a_batch_no_daemon_can_decode_costs_its_spool_only_its_own_events(
    socket_path: Path, store: Path, tmp_path: Path, alone: bool
) -> None:
    # A spooled batch that does not decode (a record the call sites failed to check) ended the
    # resend of the spool file there: every event spooled after it was reported lost.
    spool_dir = tmp_path / "spool"
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=spool_dir)
    daemon = DaemonProcess(socket_path).start()
    steps = [] if alone else list(range(100))
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        client.flush(timeout=30)
        assert daemon.stop() == 0
        for step in steps[:1]:
            client.log_metric(run_id, "loss", float(step), step=step)
            with pytest.raises(DaemonUnavailable, match="1 event is spooled"):
                client.flush(timeout=30)
        # With content, so that it ends its batch, as an inline artifact does: the batch it costs is its own.
        client._sender.submit((RecordKind.ARTIFACT.value, run_id, "w.bin", b"w", None, (1, "not an int")))
        for step in steps[1:]:
            client.log_metric(run_id, "loss", float(step), step=step)
        with pytest.raises(DaemonUnavailable, match=f"{len(steps) + 1} events? (is|are) spooled"):
            client.flush(timeout=30)
        daemon = DaemonProcess(socket_path).start()
        try:
            failure = _the_failure_the_next_flush_reports(client)
            assert re.match(r"spooled batch \d+ \(1 event\) is lost: the batch at byte \d+ of spool file .* cannot be decoded: ", failure)
            assert [m.step for m in client.get_metric_history(run_id, "loss")] == steps
            # Delivered (or lost) whole, the file goes: also when no ack will come for its last batch.
            assert _spool_files(spool_dir) == [] and client.stats()["spooled"] == 0 and client.pending() == 0
        finally:
            client.close()
            assert daemon.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("via", ["spool", "send"])
def test_a_record_that_cannot_be_encoded_costs_only_itself_and_is_reported(
    socket_path: Path, store: Path, tmp_path: Path, via: str
) -> None:
    # A record msgpack cannot pack (a lone surrogate) used to cost its whole batch, up to 10,000
    # other records; before that, spooling raised there, and the records taken from the buffer so
    # far were lost without a word. The call sites now refuse every such string (a file name that
    # is not UTF-8 was the way in), so the record is submitted past them, through the sender's own
    # submit(): no mock, the real buffer, sender thread, encoder, spool and daemon.
    mlflow = pytest.importorskip("mlflow")
    points = 12_000  # each side of the record more than a batch (10,000 records), all within the buffer bound
    # "spool": no daemon answers, the flush gives up and spools (encode_frame); "send": the daemon
    # starts before anything was given up, and the buffer goes over the socket (Connection.send).
    connect_timeout = 0.5 if via == "spool" else 60.0
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=connect_timeout, spool_dir=tmp_path / "spool")
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        for step in range(points):
            client.log_metric(run_id, "loss", float(step), step=step)
        client._sender.submit((RecordKind.TAG.value, run_id, "note", "not UTF-8: \udcff"))
        for step in range(points, 2 * points):
            client.log_metric(run_id, "loss", float(step), step=step)
        if via == "spool":
            with pytest.raises(DaemonUnavailable, match="spooled"):
                client.flush(timeout=30)
        daemon = DaemonProcess(socket_path).start()
        try:
            failure = _the_failure_the_next_flush_reports(client)
            assert failure.startswith(f"A tag record 'note' of run {run_id} could not be encoded and was not sent: "), failure
            assert "UnicodeEncodeError" in failure
            history = mlflow.MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "loss")
            assert [m.step for m in history] == list(range(2 * points))
            client.log_metric(run_id, "after", 1.0)  # the sender goes on
            client.flush(timeout=30)
            assert client.pending() == 0 and _spool_files(tmp_path / "spool") == []
        finally:
            client.close()
            assert daemon.stop() == 0, daemon.log()


def _spool_with_an_undecodable_batch(spool_dir: Path, store: Path, run_id: str) -> tuple[Path, int]:
    """A spool left by an exited process: 3 points of "a", a batch that does not decode, 2 of "b";
    and the byte the undecodable batch starts at."""
    spool_dir.mkdir(exist_ok=True)
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id="gone", pid=1, host=socket.gethostname(), store_root=str(store))
    before = encode_frame(hello) + encode_frame(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "a", 3)]))
    spool = spool_dir / "gone.spool"
    spool.write_bytes(
        before + encode_frame(_undecodable_batch(2, run_id)) + encode_frame(Batch(seq=3, records=metric_records(run_id, "b", 2)))
    )
    return spool, len(before)


def test_trackd_sync_delivers_the_batches_around_one_that_does_not_decode_and_says_it_is_lost(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The spool was reported damaged and kept: none of its batches was delivered, by `trackd sync`
    # or by any later process, because one of them did not decode.
    run_id = "abcdefabcdefabcdefabcdefabcdef34"
    spool, at = _spool_with_an_undecodable_batch(tmp_path, store, run_id)
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(tmp_path)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    # Delivered in part: the lost batch makes it exit 1, as its --help says.
    assert sync.returncode == 1 and f"{spool}: delivered 6 events (2 batches) of client gone" in sync.stdout, sync.stderr
    # Never sent, so not "refused by the store".
    assert sync.stderr.startswith(f"  lost, not delivered: the batch at byte {at} of spool file {spool} cannot be decoded: ")
    assert "refused" not in sync.stderr and not spool.exists()
    reader = StoreReader(store)
    assert [len(reader.get_metric_history(run_id, key)) for key in ("a", "b")] == [3, 2]


@pytest.mark.timeout(120)
def test_the_background_delivery_of_a_spool_with_a_batch_that_does_not_decode_says_it_is_lost(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The process that logged it is gone: the one delivering its spool says what is lost, in a line
    # of its own (not among the store's refusals, nor as the whole file left undelivered).
    run_id = "abcdefabcdefabcdefabcdefabcdef56"
    spool_dir = tmp_path / "spool"
    spool, at = _spool_with_an_undecodable_batch(spool_dir, store, run_id)
    env = _env(daemon, store, spool_dir)
    long = run_python(_LOGS_UNTIL_GONE.format(path=str(spool), after=1), env)
    assert long.returncode == 0, long.stderr
    assert not spool.exists()
    [line] = [line for line in long.stderr.splitlines() if "of an exited process" in line]
    assert line.startswith(f"trackd: delivered the spool {spool} of an exited process but for 1 batch in it that cannot be decoded")
    assert f"the batch at byte {at} of spool file {spool} cannot be decoded" in line and "refused" not in line
    reader = StoreReader(store)
    assert [len(reader.get_metric_history(run_id, key)) for key in ("a", "b")] == [3, 2]


# A process that connects and says whether it started delivering other processes' spools.
_TRIES_ORPHANS = """
import threading, trackd
with trackd.start_run():
    trackd.log_metric('x', 1.0)
    trackd.flush()
    print(any(thread.name == "trackd-spool-sync" for thread in threading.enumerate()))
"""


@pytest.mark.timeout(120)
def test_a_spool_the_background_delivery_cannot_read_is_said_once_and_left_to_trackd_sync(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Its header damaged, it failed without a word, and every trackd process tried it again.
    spool_dir = tmp_path / "spool"
    run_id = "0123456789abcdef0123456789abcdef"
    spool = _old_spool(spool_dir, store, run_id)
    hello_and_batch = spool.read_bytes()
    with spool.open("ab") as damaged:
        damaged.write(b"\xff" * 8)  # a frame header announcing 4 GiB
    env = _env(daemon, store, spool_dir)
    first = run_python(_LOGS_UNTIL_GONE.format(path=str(spool), after=1), env)
    assert first.returncode == 0, first.stderr
    aside = spool_dir / "gone.undeliverable.spool"
    [line] = [line for line in first.stderr.splitlines() if "exited process" in line]
    assert line.startswith(
        f"trackd: delivered 4 events (1 batch) of the spool of an exited process, but not the rest: Spool file {spool} is damaged "
        f"at byte {len(hello_and_batch)}: "
    ), line
    assert f"it is set aside as {aside}" in line and "`trackd sync`" in line
    assert _spool_files(spool_dir) == [aside]
    # The batch before the damage is delivered, and left out of the file set aside: its Hello and the 8 bytes.
    assert [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")] == [0, 1, 2]
    with SpoolReader(aside.open("rb"), aside) as reader:
        assert reader.hello.client_id == "gone" and aside.read_bytes() == hello_and_batch[: reader.hello_size] + b"\xff" * 8
    second = run_python(_TRIES_ORPHANS, env)
    assert second.returncode == 0 and second.stdout.split() == ["False"], second  # not tried again in the background
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 1 and f"{aside}: not delivered: Spool file {aside} is damaged at byte " in sync.stderr, sync
