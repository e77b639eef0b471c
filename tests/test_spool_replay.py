"""A large spool goes to the daemon a frame at a time, exactly once: the process that wrote it
resends it as acks make room, and `trackd sync` reads it as it sends it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, child_env, create_run_record, fill, metric_lines, metric_records, short_socket_path, wait_for

from trackd import Client, ClientConfig
from trackd.client._delivery import sync_spools
from trackd.client._sender_state import SenderState
from trackd.client._spool import SpoolReader
from trackd.errors import TrackdError
from trackd.protocol import (
    FRAME_HEADER_SIZE, NEED_DATA, PROTOCOL_VERSION, Ack, Batch, Connection, ConnectionClosed, ErrorReply, Flush, FlushDone, Hello,
    Role, Welcome, encode_frame,
)
from trackd.store import StoreReader

# Logs with no daemon to answer (the test starts one later) until everything is in the spool file,
# then, capped to DATA_CAP more bytes of data if asked, waits for a line on stdin and flushes.
SPOOLER = """
import resource, sys, trackd
points, artifacts, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
run = trackd.start_run()
print("run", run.info.run_id, flush=True)
for i in range(artifacts):
    trackd.log_text(f"{i:08d}" * (ARTIFACT_SIZE // 8), f"chunks/{i}.txt")
for step in range(points):
    trackd.log_metric("loss", float(step), step=step)
try:
    trackd.flush(timeout=5)  # no daemon, none started: everything goes to the spool file
except Exception as exc:
    print("spooled", type(exc).__name__, flush=True)
if cap:
    with open("/proc/self/status") as status:
        data = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
    resource.setrlimit(resource.RLIMIT_DATA, (data + cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))
print("ready", flush=True)
sys.stdin.readline()
try:
    trackd.flush(timeout=120)
except Exception as exc:
    print("flush raised:", exc, flush=True)
print("flushed", flush=True)
trackd.end_run()
""".replace("ARTIFACT_SIZE", str(1024 * 1024))


# Seconds of writing for the daemon, so that it is killed in the middle of the resend.
KILLED_POINTS = 1_500_000

Spooler = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def spooler(socket_path: Path, store: Path, tmp_path: Path) -> Iterator[Spooler]:
    """Starts SPOOLER (``points``, ``artifacts``, ``cap`` keywords) with its spool in ``tmp_path / "spool"``,
    returning it once it is ready, with its run id; killed at teardown if still running."""
    children: list[subprocess.Popen[str]] = []
    env = child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.5",
    )

    def start(*, points: int, artifacts: int = 0, cap: int = 0) -> tuple[subprocess.Popen[str], str]:
        child = subprocess.Popen(
            [sys.executable, "-c", SPOOLER, str(points), str(artifacts), str(cap)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        children.append(child)
        assert child.stdout is not None
        run_id = child.stdout.readline().split()[1]
        if not any(line.startswith("ready") for line in child.stdout):
            raise AssertionError(f"the spooling child exited: {child.communicate(timeout=30)[1]}")
        return child, run_id

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


@pytest.fixture
def daemons(socket_path: Path) -> Iterator[Callable[[], DaemonProcess]]:
    """Starts a daemon on ``socket_path`` when called; each one still running must exit cleanly at teardown."""
    started: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        started.append(DaemonProcess(socket_path).start())
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            assert daemon.stop() == 0, daemon.log()


def _go_and_wait(child: subprocess.Popen[str]) -> tuple[str, str]:
    """Tell the child a daemon answers now; its stdout and stderr after that, once it exited 0."""
    out, err = child.communicate("go\n", timeout=180)
    assert child.returncode == 0 and "flushed" in out, err
    return out, err


def _steps(store: Path, run_id: str) -> list[int]:
    return [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")]


@pytest.mark.timeout(240)
def test_a_process_capped_below_its_spool_size_resends_it_exactly_once(
    spooler: Spooler, daemons: Callable[[], DaemonProcess], store: Path, tmp_path: Path
) -> None:
    # This used to fail for ever: the sender read the whole 96 MiB file at once on reconnecting
    # (MemoryError under the cap, "sender thread failed; retrying"), and flush() timed out.
    artifacts, points = 96, 20_000
    child, run_id = spooler(points=points, artifacts=artifacts, cap=40 * 1024 * 1024)
    (spool,) = (tmp_path / "spool").glob("*.spool")
    assert spool.stat().st_size > artifacts * 1024 * 1024
    daemons()
    out, err = _go_and_wait(child)
    assert "flush raised" not in out and "MemoryError" not in err and "failed" not in err, out + err
    assert _steps(store, run_id) == list(range(points))
    run = StoreReader(store).get_run(run_id)
    chunks = Path(run.info.artifact_uri.removeprefix("file://")) / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == sorted(f"{i}.txt" for i in range(artifacts))
    assert (chunks / "95.txt").read_text() == "00000095" * (1024 * 1024 // 8)
    assert not spool.exists()


@pytest.mark.timeout(240)
def test_a_daemon_killed_while_a_process_resends_its_spool_gets_the_rest_exactly_once_after_a_restart(
    spooler: Spooler, daemons: Callable[[], DaemonProcess], store: Path, tmp_path: Path
) -> None:
    child, run_id = spooler(points=KILLED_POINTS)
    daemon = daemons()
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    # Some of the spool is written, not all of it: the resend is under way.
    metric_file = store / "0" / run_id / "metrics" / "loss"
    wait_for(lambda: metric_file.exists() and metric_file.stat().st_size > 0, 60, message="part of the spool written")
    # The promise is for a daemon restarted within TRACKD_CONNECT_TIMEOUT (0.5 s here, for the
    # spooling above): the process resends the rest to the new one, exactly once. On a loaded
    # machine the kill, the look below and a new daemon's start took longer, and the process gave
    # the daemon up as gone ("flush raised: No trackd daemon answers ...; 1490001 events are
    # spooled", right for an outage that long). Stopped meanwhile, the process finds the old
    # connection broken and the new daemon answering when it goes on, however long the start took.
    child.send_signal(signal.SIGSTOP)
    try:
        daemon.kill()  # SIGKILL
        assert len(metric_file.read_text().splitlines()) < KILLED_POINTS, "the resend ended before the kill"
        daemons()
    finally:
        child.send_signal(signal.SIGCONT)
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0 and "flushed" in out and "flush raised" not in out, out + err
    assert _steps(store, run_id) == list(range(KILLED_POINTS))
    assert list((tmp_path / "spool").glob("*.spool")) == []


@pytest.mark.timeout(240)
def test_a_spool_damaged_in_the_middle_delivers_what_comes_before_and_counts_the_rest_lost(
    spooler: Spooler, daemons: Callable[[], DaemonProcess], store: Path, tmp_path: Path
) -> None:
    # This used to lose the whole file: it was read (and judged) whole before a frame was sent.
    points = 60_000
    child, run_id = spooler(points=points)
    (spool,) = (tmp_path / "spool").glob("*.spool")
    with SpoolReader(spool.open("rb"), spool) as reader:
        ends = [reader.offset for _ in reader.batches()]
    assert len(ends) >= 4, ends
    with spool.open("r+b") as damaged:  # someone else (a disk, a cleaner) garbles a header
        damaged.seek(ends[len(ends) // 2])
        damaged.write(b"\xff" * FRAME_HEADER_SIZE)
    daemons()
    out, err = _go_and_wait(child)
    delivered = _steps(store, run_id)
    assert 0 < len(delivered) < points and delivered == list(range(len(delivered)))
    assert f"{points - len(delivered)} events spooled to {spool} could not be read back" in out + err, out + err
    assert not spool.exists()


def test_trackd_sync_delivers_every_whole_batch_of_a_large_spool_once_and_ignores_a_torn_last_frame(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    run_id, batches, per_batch = "00112233445566778899aabbccddeeff", 200, 5_000
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id="exited", pid=1, host=socket.gethostname(), store_root=str(store))
    records = metric_records(run_id, "loss", batches * per_batch)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    path = spool_dir / "exited.spool"
    with path.open("wb") as spool:
        spool.write(encode_frame(hello) + encode_frame(Batch(seq=1, records=[create_run_record(run_id)])))
        for seq in range(2, batches + 2):
            start = (seq - 2) * per_batch
            spool.write(encode_frame(Batch(seq=seq, records=records[start : start + per_batch])))
        # Its writer died in the middle of the next frame.
        spool.write(encode_frame(Batch(seq=batches + 2, records=metric_records(run_id, "torn", 10)))[:-7])
    (result,) = sync_spools(spool_dir, daemon.paths.socket, timeout=60)
    assert result.error is None and result.batches == batches + 1, result
    assert _steps(store, run_id) == list(range(batches * per_batch))
    assert StoreReader(store).get_metric_history(run_id, "torn") == []
    assert not path.exists()
    # Sent again (a sync that died before removing it), nothing is written twice.
    path.write_bytes(encode_frame(hello) + encode_frame(Batch(seq=2, records=records[:per_batch])))
    (again,) = sync_spools(spool_dir, daemon.paths.socket, timeout=60)
    assert again.error is None and again.batches == 0, again
    assert _steps(store, run_id) == list(range(batches * per_batch))


@pytest.mark.timeout(120)
def test_trackd_sync_delivers_a_spool_damaged_in_the_middle_once_and_sets_aside_only_what_cannot_be_read(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # `trackd sync` sent the batches before the damage, said the file was "not delivered" and kept
    # it whole, and every sync sent them again: a daemon that no longer knew the client (its
    # journal is beside the socket, in $XDG_RUNTIME_DIR, which a reboot empties) wrote them twice.
    mlflow = pytest.importorskip("mlflow")
    run_id = "00112233445566778899aabbccddee11"
    hello = encode_frame(Hello(protocol_version=PROTOCOL_VERSION, client_id="torn", pid=1, host=socket.gethostname(), store_root=str(store)))
    before = encode_frame(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 3)]))
    before += encode_frame(Batch(seq=2, records=metric_records(run_id, "loss", 5)[3:]))
    rest = b"\xff" * FRAME_HEADER_SIZE + encode_frame(Batch(seq=3, records=metric_records(run_id, "late", 2)))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    spool, aside = spool_dir / "torn.spool", spool_dir / "torn.undeliverable.spool"
    spool.write_bytes(hello + before + rest)

    def sync(socket_path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)],
            env=child_env(socket_path), capture_output=True, text=True, timeout=60,
        )

    first = sync(daemon.paths.socket)
    assert first.returncode == 1 and f"{spool}: delivered 6 events (2 batches) of client torn, but not the rest" in first.stdout, first
    assert first.stderr.startswith(
        f"{spool}: the rest is not delivered: Spool file {spool} is damaged at byte {len(hello + before)}: "
    ), first.stderr
    assert f"the {len(rest)} bytes from there on cannot be read; set aside as {aside}" in first.stderr, first.stderr
    assert sorted(spool_dir.iterdir()) == [aside] and aside.read_bytes() == hello + rest
    # A daemon with no memory of the client (as after a reboot): nothing is sent twice.
    forgetful = DaemonProcess(short_socket_path()).start()
    try:
        again = sync(forgetful.paths.socket)
    finally:
        assert forgetful.stop() == 0, forgetful.log()
    assert again.returncode == 1 and "delivered" not in again.stdout, again
    assert f"{aside}: not delivered: Spool file {aside} is damaged at byte {len(hello)}: " in again.stderr, again.stderr
    assert sorted(spool_dir.iterdir()) == [aside] and aside.read_bytes() == hello + rest
    reader = mlflow.MlflowClient(tracking_uri=str(store))
    assert [m.step for m in reader.get_metric_history(run_id, "loss")] == [0, 1, 2, 3, 4]
    assert reader.get_metric_history(run_id, "late") == []


def test_a_damaged_spool_that_cannot_be_set_aside_on_a_full_disk_is_kept_whole_and_leaves_no_temp_file(
    daemon: DaemonProcess, store: Path, small_disk: Path
) -> None:
    # This used to leave .torn.undeliverable.spool.tmp behind, holding what it copied before the
    # disk filled, on the disk a spool is written to when things already go wrong.
    run_id = "00112233445566778899aabbccddee22"
    hello = encode_frame(Hello(protocol_version=PROTOCOL_VERSION, client_id="torn", pid=1, host=socket.gethostname(), store_root=str(store)))
    before = encode_frame(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 3)]))
    rest = b"\xff" * (512 * 1024)  # a damaged header, and what followed it
    spool_dir = small_disk / "spool"
    spool_dir.mkdir(mode=0o700)
    spool = spool_dir / "torn.spool"
    spool.write_bytes(hello + before + rest)
    fill(small_disk / "filler")

    (result,) = sync_spools(spool_dir, daemon.paths.socket, timeout=60)
    assert result.batches == 1 and result.aside is None, result
    assert "could not be set aside" in str(result.error), result.error
    assert sorted(spool_dir.iterdir()) == [spool] and spool.read_bytes() == hello + before + rest
    assert [m.step for m in StoreReader(store).get_metric_history(run_id, "loss")] == [0, 1, 2]


class WindowWatcher:
    """A daemon that acknowledges what it received only once the client has stopped sending (its
    window is full), and notes the most bytes (and events) the client had out at once. A real
    daemon acknowledges as it writes, so how much a client sends unacknowledged cannot be seen there."""

    QUIET = 0.2  # no bytes for this long: the client waits for acks (an early ack only lowers the count)

    def __init__(self, path: Path) -> None:
        self.most_out = 0
        self.most_events = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        conn.settimeout(self.QUIET)
        protocol, out, out_events, last = Connection(Role.DAEMON), 0, 0, 0
        with conn:
            while True:
                try:
                    data = conn.recv(256 * 1024)
                except TimeoutError:
                    if out:
                        conn.sendall(protocol.send(Ack(seq=last)))
                        out = out_events = 0
                    continue
                if not data:
                    return
                protocol.receive_data(data)
                while (event := protocol.next_event()) is not NEED_DATA and not isinstance(event, ConnectionClosed):
                    if isinstance(event, Hello):
                        welcome = Welcome(protocol_version=PROTOCOL_VERSION, daemon_pid=os.getpid(), resume_seq=0)
                        conn.sendall(protocol.send(welcome))
                    elif isinstance(event, Batch):
                        out, out_events, last = out + protocol.last_frame_size, out_events + event.events, event.seq
                        self.most_out = max(self.most_out, out)
                        self.most_events = max(self.most_events, out_events)
                    elif isinstance(event, Flush):
                        done = FlushDone(request_id=event.request_id, acked_seq=last)
                        conn.sendall(protocol.send(Ack(seq=last)) + protocol.send(done))
                        out = out_events = 0

    def close(self) -> None:
        self._server.close()


def test_the_spools_last_batches_count_in_the_window_until_acknowledged(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # Once the spool file was read to its end, its batches still unacknowledged left the window's
    # count: the buffer then sent a whole window more, twice the bound the client promises.
    window, artifact = 1024 * 1024, 128 * 1024
    config = ClientConfig(
        socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=tmp_path / "spool", max_unacked_bytes=window
    )
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        for i in range(6):  # 768 KiB, less than a window
            client.log_text(run_id, "x" * artifact, f"spooled/{i}.txt")
        with pytest.raises(TrackdError):
            client.flush(timeout=5)  # no daemon: everything goes to the spool file
        watcher = WindowWatcher(socket_path)
        try:
            for i in range(16):
                client.log_text(run_id, "y" * artifact, f"later/{i}.txt")
            client.flush(timeout=60)
        finally:
            watcher.close()
    assert watcher.most_out <= window + artifact + 4096, watcher.most_out


def test_batches_kept_in_memory_beside_a_spool_file_that_cannot_be_written_are_resent_within_the_window(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # No spool file can be written (its folder is a file): the spill cut the buffer into batches and
    # kept them in memory. A reconnect sent every one of them at once, six windows' worth, where
    # the client promises one (and the batch that crossed it).
    window, points = 10_000, 60_000
    unspoolable = tmp_path / "spool"
    unspoolable.write_text("not a directory")
    config = ClientConfig(
        socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=unspoolable,
        max_buffered=2 * points, max_unacked_events=window,
    )
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        for step in range(points):
            client.log_metric(run_id, "loss", float(step), step=step)
        with pytest.raises(TrackdError, match="cannot be spooled"):
            client.flush(timeout=5)
        unacked = client.stats()["unacked_batches"]
        assert isinstance(unacked, int) and unacked >= points // SenderState.MAX_RECORDS_PER_BATCH
        watcher = WindowWatcher(socket_path)
        try:
            client.flush(timeout=60)
        finally:
            watcher.close()
    assert watcher.most_events <= window + SenderState.MAX_RECORDS_PER_BATCH, watcher.most_events


def _spool_points(client: Client, points: int) -> str:
    """A new run with ``points`` points of "loss", all in the spool file (no daemon answers); its id."""
    run_id = client.create_run().info.run_id
    for step in range(points):
        client.log_metric(run_id, "loss", float(step), step=step)
    with pytest.raises(TrackdError):
        client.flush(timeout=5)  # no daemon: everything goes to the spool file
    return run_id


@pytest.mark.timeout(240)
def test_a_resend_cut_short_counts_only_what_the_daemon_has_not_acknowledged(
    socket_path: Path, store: Path, tmp_path: Path, daemons: Callable[[], DaemonProcess]
) -> None:
    # The daemon killed half-way through the resend: flush said all 1,500,001 events were still
    # spooled ("Holding 1500001 events"), those the daemon had written and acknowledged included.
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=0.5, spool_dir=tmp_path / "spool")
    with Client(store, config=config) as client:
        run_id = _spool_points(client, KILLED_POINTS)
        total = client.pending()
        daemon = daemons()
        wait_for(lambda: client.stats()["acked_seq"] != 0, 60, message="part of the spool acknowledged")
        daemon.kill()  # SIGKILL
        assert list((tmp_path / "spool").glob("*.spool")), "the resend ended before the kill"
        with pytest.raises(TrackdError) as caught:
            client.flush(timeout=5)
        waiting = client.pending()
        assert f"{waiting} events are spooled" in str(caught.value)
        assert 0 < waiting < total
        assert waiting + 1 + len(_steps(store, run_id)) >= total  # none written uncounted (1: the run's creation)
        daemons()
        client.flush(timeout=120)
    assert _steps(store, run_id) == list(range(KILLED_POINTS))


@pytest.mark.timeout(240)
def test_requests_made_while_a_large_spool_is_resent_are_answered_and_a_read_sees_what_came_before(
    socket_path: Path, store: Path, tmp_path: Path, daemons: Callable[[], DaemonProcess]
) -> None:
    # After a daemon restart, a process resending a large spool (logged while no daemon ran) held
    # its set_experiment behind the whole resend, and counted the resend against a read's flush:
    # both raised FlushTimeout after connect_timeout, the daemon healthy and writing.
    points = 2 * KILLED_POINTS
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=1.0, spool_dir=tmp_path / "spool")
    with Client(store, config=config) as client:
        run_id = _spool_points(client, points)
        (spool,) = (tmp_path / "spool").glob("*.spool")
        daemons()
        wait_for(lambda: client.stats()["acked_seq"] != 0, 60, message="the resend under way")
        experiment_id = client.get_or_create_experiment("made during the resend")  # set_experiment's request
        assert spool.exists(), "answered only once the resend had ended"
        client.log_metric(run_id, "late", 1.0, step=0)
        # Read-your-writes: the read waits for the spool's events and the point logged after them.
        assert [m.value for m in client.get_metric_history(run_id, "late")] == [1.0]
        assert not spool.exists()
        assert len(metric_lines(store, run_id, "loss")) == points
    assert StoreReader(store).get_experiment(experiment_id).name == "made during the resend"


# Logs POINTS points with no daemon to answer (all go to the spool file), waits for a line on
# stdin, then either ends its run in the middle of the job and lists its spool folder, or exits.
END_AFTER_SPOOL = """
import os, sys, trackd
points, mode = int(sys.argv[1]), sys.argv[2]
run = trackd.start_run()
print("run", run.info.run_id, flush=True)
for step in range(points):
    trackd.log_metric("loss", float(step), step=step)
try:
    trackd.flush(timeout=5)
except Exception as exc:
    print("spooled", type(exc).__name__, flush=True)
print("ready", flush=True)
sys.stdin.readline()
if mode == "end_run":
    trackd.end_run()
    print("ended", [name for name in os.listdir(os.environ["TRACKD_SPOOL_DIR"]) if name.endswith(".spool")], flush=True)
"""


def _end_after_spool(socket_path: Path, store: Path, tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], str]:
    """END_AFTER_SPOOL with a spool of 2 * KILLED_POINTS points (seconds of writing for a daemon), once ready."""
    env = child_env(
        socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_EXIT_TIMEOUT="1",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", END_AFTER_SPOOL, str(2 * KILLED_POINTS), mode],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[1]
    if not any(line.startswith("ready") for line in child.stdout):
        raise AssertionError(f"the spooling child exited: {child.communicate(timeout=30)[1]}")
    return child, run_id


def _daemon_then_go(child: subprocess.Popen[str], daemons: Callable[[], DaemonProcess]) -> tuple[str, str]:
    """Start a daemon, tell the child to go on; its stdout and stderr once it exited 0."""
    try:
        daemons()
        out, err = child.communicate("go\n", timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    return out, err


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["end_run", "exit"])
def test_end_run_in_the_middle_of_a_job_waits_while_the_daemon_writes_a_large_spool_and_exit_keeps_its_bound(
    socket_path: Path, store: Path, tmp_path: Path, daemons: Callable[[], DaemonProcess], mode: str
) -> None:
    # end_run() during the resend of a large spool (a daemon restarted) gave the healthy daemon
    # up after TRACKD_EXIT_TIMEOUT in all, spooled what it was writing and said it "did not
    # answer". In the middle of a job the bound is on the daemon's silence, as for reads. Exit
    # keeps it as its total bound (SIGTERM and normal exit end in bounded time), and says the
    # daemon was busy, not that it "did not answer within 1 s".
    child, run_id = _end_after_spool(socket_path, store, tmp_path, mode)
    out, err = _daemon_then_go(child, daemons)
    if mode == "end_run":
        assert "ended []" in out, (out, err)  # the spool delivered when end_run returned
        assert "did not answer" not in err and "not delivered" not in err, err
        assert len(metric_lines(store, run_id, "loss")) == 2 * KILLED_POINTS
        assert StoreReader(store).get_run(run_id).info.status == "FINISHED"
        return
    [line] = [line for line in err.splitlines() if "not delivered" in line]
    assert f"the daemon at {socket_path} was busy: it wrote " in line and "did not answer" not in line, err
    # The spool's earlier events were said when they were spooled; the line counts those added now
    # ("1 more event"), and says how many wait in all.
    assert re.search(r" more events? (was|were) not delivered: .*\(\d+ events in that spool in all\)", line), line
    assert list((tmp_path / "spool").glob("*.spool")), "the resend ended within the exit's bound"
    sync_spools(tmp_path / "spool", socket_path)
    assert _steps(store, run_id) == list(range(2 * KILLED_POINTS))  # once each: spooled, not lost


def test_trackd_sync_is_answered_for_a_process_that_left_its_first_barrier_waiting(
    small_disk: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    # Found by chaos testing: a process's exit flush (its barrier 1) waited for a batch the daemon
    # had not written yet; the process gave up (TRACKD_EXIT_TIMEOUT), spooled the batch and exited,
    # and the daemon wrote it after the connection had closed. `trackd sync` of that spool sends a
    # barrier 1 of its own, which the daemon took for the dead process's, sent again, and never
    # answered: "The daemon did not confirm ... within 60 s", at every sync, the file kept.
    store, filler = small_disk / "mlruns", small_disk / "filler"
    run_id, client_id = "00112233445566778899aabbccddeeff", "leftwaiting"
    records = metric_records(run_id, "loss", 100)
    gone = RawClient(daemon.paths.socket, timeout=30.0)
    try:
        assert isinstance(gone.hello(str(store), client_id=client_id), Welcome)
        gone.send(Batch(seq=1, records=[create_run_record(run_id)]))
        assert gone.next_event() == Ack(seq=1)
        fill(filler)  # the next write is held until space returns
        gone.send(Batch(seq=2, records=records))
        gone.send(Flush(request_id=1))
        reply = gone.next_event()
        assert isinstance(reply, ErrorReply) and reply.code == "store_unavailable", reply
    finally:
        gone.close()
    wait_for(lambda: daemon.status()["clients_connected"] == 0, message="the daemon to see the process gone")
    filler.unlink()
    wait_for(lambda: len(StoreReader(store).get_metric_history(run_id, "loss")) == 100, timeout=30, message="batch 2 written")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=1, host=socket.gethostname(), store_root=str(store))
    (spool_dir / f"{client_id}.spool").write_bytes(encode_frame(hello) + encode_frame(Batch(seq=2, records=records)))
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir), "--timeout", "10"],
        capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert list(spool_dir.iterdir()) == []
    assert _steps(store, run_id) == list(range(100))
