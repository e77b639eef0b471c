"""The daemon process from outside: its socket, its refusals, its signals and its counters."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import (
    DaemonProcess,
    RawClient,
    create_run_record,
    metric_lines,
    metric_records,
    wait_for,
)

import trackd
from trackd._paths import DaemonPaths
from trackd.client import ClientConfig
from trackd.client._control import query_status
from trackd.client._launcher import daemon_answers
from trackd.daemon import _state
from trackd.protocol import (
    FRAME_HEADER_SIZE, PROTOCOL_VERSION, Ack, Batch, ErrorCode, ErrorReply, Hello, RecordKind, Rejected, Welcome, decode_body, encode_frame,
)

pytestmark = pytest.mark.timeout(60)


def client_for(store: Path, socket_path: Path) -> trackd.Client:
    """A trackd.Client that talks to the test's daemon and never starts one of its own."""
    return trackd.Client(str(store), config=ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=5.0))


def test_socket_is_private_to_the_user(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.paths.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.paths.directory.stat().st_mode) == 0o700


def test_daemon_writes_pid_file_with_its_own_pid(daemon: DaemonProcess) -> None:
    assert daemon.paths.pid.read_text().strip() == str(daemon.pid)


def test_stale_socket_file_is_replaced_at_start(socket_path: Path) -> None:
    # A socket that was bound and closed leaves its file behind with nothing listening.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()
    assert socket_path.exists() and not daemon_answers(socket_path)
    proc = DaemonProcess(socket_path).start()
    try:
        assert proc.status()["pid"] == proc.pid
        assert "Removing stale socket" in proc.log()
    finally:
        assert proc.stop() == 0


def test_second_daemon_on_the_same_socket_exits_and_first_keeps_serving(daemon: DaemonProcess, store: Path) -> None:
    inode = daemon.paths.socket.stat().st_ino
    second = subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--socket", str(daemon.paths.socket)],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode != 0
    assert f"already running on {daemon.paths.socket} (pid {daemon.pid})" in second.stderr
    # The first daemon's socket, pid file and service are untouched.
    assert daemon.paths.socket.stat().st_ino == inode
    assert daemon.paths.pid.read_text().strip() == str(daemon.pid)
    with client_for(store, daemon.paths.socket) as client:
        run = client.create_run("0")
        client.log_metric(run.info.run_id, "loss", 0.5, step=1)
        client.flush(timeout=10)
    assert len(metric_lines(store, run.info.run_id, "loss")) == 1


def test_daemon_refuses_to_replace_a_foreign_listener(socket_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(socket_path))
        listener.listen()
        result = subprocess.run(
            [sys.executable, "-m", "trackd.daemon", "--socket", str(socket_path)],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode != 0
        assert f"Another process answers on {socket_path}; refusing to replace a live daemon." in result.stderr
        assert daemon_answers(socket_path)


def test_hello_with_another_protocol_version_gets_version_mismatch(daemon: DaemonProcess, store: Path) -> None:
    raw = RawClient(daemon.paths.socket)
    try:
        reply = raw.hello(str(store), protocol_version=PROTOCOL_VERSION + 1)
        assert isinstance(reply, ErrorReply)
        assert reply.code == ErrorCode.VERSION_MISMATCH
        assert f"version {PROTOCOL_VERSION + 1}" in reply.message
        assert raw.events_until_closed() == []
    finally:
        raw.close()


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff\xff\xff\xff", id="frame-too-large"),
        pytest.param(b"\x00\x00\x00\x01\xc1", id="invalid-msgpack"),
        pytest.param(b"\x00\x00\x00\x02\x91\x63", id="unknown-event-code"),
        pytest.param(b"\x00\x00\x00\x03\x92\x01\x01", id="hello-twice"),
    ],
)
def test_garbage_gets_error_reply_and_close_while_other_clients_are_written(
    daemon: DaemonProcess, store: Path, garbage: bytes
) -> None:
    with client_for(store, daemon.paths.socket) as client:
        run_id = client.create_run("0").info.run_id
        for step in range(5000):
            client.log_metric(run_id, "loss", 0.1, step=step)
        raw = RawClient(daemon.paths.socket)
        try:
            assert isinstance(raw.hello(str(store), client_id="garbage"), Welcome)
            raw.send_bytes(garbage)
            (reply,) = raw.events_until_closed()
        finally:
            raw.close()
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME and reply.request_id == 0
        for step in range(5000, 10_000):
            client.log_metric(run_id, "loss", 0.1, step=step)
        client.flush(timeout=10)
    steps = [int(line.split()[2]) for line in metric_lines(store, run_id, "loss")]
    assert steps == list(range(10_000))
    assert daemon.status()["protocol_errors"] == 1


def test_a_client_gone_in_the_middle_of_a_frame_is_not_a_protocol_error(daemon: DaemonProcess, store: Path) -> None:
    # A client killed while sending, or one that gave a stalled daemon up mid-send, used to be
    # logged as "broke the protocol" and counted among protocol_errors.
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store), client_id="cut"), Welcome)
        whole = encode_frame(Batch(seq=1, records=[create_run_record(uuid.uuid4().hex)]))
        raw.send_bytes(whole[: len(whole) // 2])
    finally:
        raw.close()
    wait_for(lambda: "closed its connection in the middle of a frame" in daemon.log(), message="the log line")
    assert daemon.status()["protocol_errors"] == 0
    assert "broke the protocol" not in daemon.log()


def test_bytes_cut_short_before_any_hello_are_still_a_protocol_error(daemon: DaemonProcess) -> None:
    # Only a client that said Hello is taken to have died mid-send; anything else is garbage.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(daemon.paths.socket))
        sock.sendall(b"\x00\x00\x10\x00junk")
    finally:
        sock.close()
    wait_for(lambda: daemon.status()["protocol_errors"] == 1, message="the garbage counted")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_makes_daemon_write_everything_received_then_exit_zero(socket_path: Path, store: Path, signum: int) -> None:
    # With a minute's max_age and room for the whole batch, nothing is written until shutdown makes
    # it so. (This used to leave --max-records at 16,384 and passed only while writes were slow.)
    proc = DaemonProcess(socket_path, "--max-age", "60", "--max-records", "50000").start()
    run_id = uuid.uuid4().hex
    raw = RawClient(socket_path)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 20_000)]))
        wait_for(lambda: proc.status()["records_received"] == 20_001, message="the batch to be received")
        assert proc.status()["records_written"] == 0
        proc.signal(signum)
        events = raw.events_until_closed()
        # Wait for the exit itself: a second signal during interpreter teardown would kill it.
        assert proc.process is not None
        code = proc.process.wait(30)
    finally:
        raw.close()
        proc.stop()
    assert code == 0, proc.log()
    assert events[0] == Ack(seq=1)
    assert isinstance(events[-1], ErrorReply) and events[-1].code == ErrorCode.SHUTTING_DOWN
    assert len(metric_lines(store, run_id, "loss")) == 20_000
    assert not socket_path.exists() and not proc.paths.pid.exists()
    assert "Shutdown complete: 20001 events received, 20001 written" in proc.log()


def test_status_counts_records_and_clients(daemon: DaemonProcess, store: Path) -> None:
    before = daemon.status()
    assert (before["records_received"], before["records_written"], before["clients_connected"]) == (0, 0, 0)
    client = client_for(store, daemon.paths.socket)
    try:
        run_id = client.create_run("0").info.run_id
        for step in range(1000):
            client.log_metric(run_id, "loss", 1.0, step=step)
        client.flush(timeout=10)
        status = daemon.status()
        # One create-run record and 1000 metric points.
        assert (status["records_received"], status["records_written"], status["metric_points_written"]) == (1001, 1001, 1000)
        assert status["clients_connected"] == 1 and status["backlog_records"] == 0
        (entry,) = status["clients"]
        assert entry["pid"] == os.getpid() and entry["connected"] is True and entry["store"] == str(store)
    finally:
        client.close()
    wait_for(lambda: daemon.status()["clients_connected"] == 0, message="the client to disconnect")
    status = daemon.status()
    assert status["clients"][0]["connected"] is False
    assert (status["items_rejected"], status["protocol_errors"], status["write_errors"]) == (0, 0, 0)


def test_status_lists_at_most_256_clients_and_counts_them_all(daemon: DaemonProcess, store: Path) -> None:
    # This used to list every session: after the 100,000-frame fuzz run (a client id per
    # connection) the reply outgrew MAX_FRAME_SIZE and `trackd daemon status` got no answer.
    for number in range(300):
        raw = RawClient(daemon.paths.socket, timeout=5.0)
        try:
            assert isinstance(raw.hello(str(store), client_id=f"one-off-{number}"), Welcome)
        finally:
            raw.close()
    keeper = RawClient(daemon.paths.socket, timeout=5.0)
    try:
        assert isinstance(keeper.hello(str(store), client_id="still-here"), Welcome)
        status = daemon.status()
    finally:
        keeper.close()
    clients = status["clients"]
    assert isinstance(clients, (list, tuple)) and len(clients) == 256 and status["clients_known"] >= 301
    # Connected clients come first, then the latest to leave.
    assert clients[0]["connected"] is True and clients[1]["connected"] is False


def test_a_client_id_per_connection_cannot_keep_more_than_10000_sessions(daemon: DaemonProcess, store: Path) -> None:
    for number in range(10_100):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(daemon.paths.socket))
            hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=f"c{number}", pid=1, host="", store_root=str(store))
            sock.sendall(encode_frame(hello))
            assert sock.recv(4096)  # the Welcome: the session exists
    wait_for(lambda: daemon.status()["clients_known"] <= 10_000, 10, message="the oldest sessions forgotten")


def test_small_batch_is_written_within_max_age_without_a_flush(daemon: DaemonProcess, store: Path) -> None:
    # This used to wait for ever: a batch below the count and byte thresholds did not wake the
    # idle write loop, so max_age never started counting until some flush came along.
    run_id = uuid.uuid4().hex
    raw = RawClient(daemon.paths.socket, timeout=5.0)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 3)]))
        assert raw.next_event() == Ack(seq=1)
    finally:
        raw.close()
    assert len(metric_lines(store, run_id, "loss")) == 3


def test_metric_series_are_written_in_order_beside_single_points(daemon: DaemonProcess, store: Path) -> None:
    run_id = uuid.uuid4().hex
    raw = RawClient(daemon.paths.socket, timeout=5.0)
    series = (RecordKind.METRIC_SERIES.value, run_id, "loss", (1, 0.5, math.nan), (1000, 1001, 1002), (0, 1, 2))
    single = (RecordKind.METRIC.value, run_id, "loss", 0.25, 1003, 3)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), series, single]))
        assert raw.next_event() == Ack(seq=1)
    finally:
        raw.close()
    # MLflow writes an int value as a float: 1 is stored as 1.0.
    assert metric_lines(store, run_id, "loss") == ["1000 1.0 0", "1001 0.5 1", "1002 nan 2", "1003 0.25 3"]
    status = daemon.status()
    assert (status["records_received"], status["metric_points_written"]) == (5, 4)


def test_an_inline_artifact_counts_its_bytes_against_the_backlog_bound(socket_path: Path, store: Path) -> None:
    # This used to count as one event (48 estimated bytes): a client ignoring acknowledgements
    # while the disk refused writes could hold far more than max_backlog_bytes in the daemon.
    proc = DaemonProcess(socket_path, "--max-age", "60", "--max-records", "50000").start()
    run_id = uuid.uuid4().hex
    raw = RawClient(socket_path, timeout=5.0)
    artifact = (RecordKind.ARTIFACT.value, run_id, "blob.bin", bytes(1024 * 1024), None)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), artifact]))
        wait_for(lambda: proc.status()["records_received"] == 2, message="the batch to be received")
        assert proc.status()["backlog_bytes"] > 1024 * 1024
    finally:
        raw.close()
        proc.stop()


def test_the_backlog_counts_what_decoded_records_take_in_memory_not_their_wire_bytes(socket_path: Path, store: Path) -> None:
    # Decoded, a plain metric record takes ~4.6x its msgpack bytes: counting wire bytes let a full
    # 256 MiB backlog hold over a gigabyte.
    proc = DaemonProcess(socket_path, "--max-age", "60", "--max-records", "50000").start()
    run_id = uuid.uuid4().hex
    raw = RawClient(socket_path, timeout=5.0)
    batch = Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 1000)])
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(batch)
        wait_for(lambda: proc.status()["records_received"] == 1001, message="the batch to be received")
        assert proc.status()["backlog_bytes"] >= 4 * len(encode_frame(batch))
    finally:
        raw.close()
        proc.stop()


def test_a_refused_series_counts_every_point_it_held(daemon: DaemonProcess, store: Path) -> None:
    run_id = uuid.uuid4().hex
    raw = RawClient(daemon.paths.socket, timeout=5.0)
    bad = (RecordKind.METRIC_SERIES.value, run_id, "../escape", (1.0, 2.0, 3.0), (1000, 1000, 1000), (0, 1, 2))
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), bad]))
        rejected = raw.next_event()
        assert raw.next_event() == Ack(seq=1)
    finally:
        raw.close()
    assert isinstance(rejected, Rejected) and rejected.events == 3, rejected
    assert "metric series '../escape'" in rejected.item and "(3 points)" in rejected.item
    status = daemon.status()
    assert (status["records_written"], status["items_rejected"]) == (1, 1)


def test_sigterm_as_soon_as_the_daemon_answers_is_a_graceful_stop(socket_path: Path) -> None:
    # This used to kill the daemon (exit -15, socket and pid file left behind): its signal
    # handlers were installed after the socket started answering. The pid file came late too.
    proc = DaemonProcess(socket_path).start()
    assert proc.paths.pid.read_text() == f"{proc.pid}\n"
    proc.signal(signal.SIGTERM)
    assert proc.stop() == 0, proc.log()
    assert not socket_path.exists() and not proc.paths.pid.exists()


def test_a_client_connected_but_not_yet_greeted_at_shutdown_is_told_why_and_logs_no_error(socket_path: Path) -> None:
    # This used to log "ERROR Could not send ErrorReply to unknown client: can't send ErrorReply
    # as daemon in state AWAIT_HELLO", and the client got no reason. Found by chaos testing.
    proc = DaemonProcess(socket_path).start()
    client = RawClient(socket_path)
    proc.status()  # answered on a later connection: the silent one, queued first, is accepted by now
    proc.signal(signal.SIGTERM)
    data = b""
    with client.sock:
        while chunk := client.sock.recv(64 * 1024):
            data += chunk
    assert data, f"the daemon closed the connection without a word:\n{proc.log()}"
    # Decoded by hand: a client's Connection takes an ErrorReply only after its Hello went out.
    reply = decode_body(data[FRAME_HEADER_SIZE:])
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.SHUTTING_DOWN, reply
    # It exits on the SIGTERM sent above: stop() would send a second, which, the shutdown still
    # under way once this connection is closed, kills it (-15 in a CI run).
    assert proc.process is not None and proc.process.wait(30) == 0, proc.log()
    assert proc.stop() == 0
    assert " ERROR " not in proc.log(), proc.log()


def test_two_stores_of_many_files_share_the_open_file_cap_within_the_file_limit(socket_path: Path, tmp_path: Path) -> None:
    # The cap is the process's: with one per store, two stores of 300 files each held 600
    # descriptors under a limit of 512, and every write then failed with EMFILE, for ever.
    daemon = DaemonProcess(socket_path, "--max-open-files", "300", "--max-connections", "16", file_limit=512).start()
    stores = [tmp_path / "a" / "mlruns", tmp_path / "b" / "mlruns"]
    clients = [client_for(store, socket_path) for store in stores]
    try:
        runs = [client.create_run("0").info.run_id for client in clients]
        for step in range(2):
            for client, run_id in zip(clients, runs):
                for key in range(300):
                    client.log_metric(run_id, f"m{key}", 0.5, 1000, step)
        for client in clients:
            client.flush(timeout=30)
        for store, run_id in zip(stores, runs):
            assert metric_lines(store, run_id, "m299") == ["1000 0.5 0", "1000 0.5 1"]
        assert daemon.status()["write_errors"] == 0
        assert "Out of file descriptors" not in daemon.log()
    finally:
        for client in clients:
            client.close(timeout=5)
        daemon.stop()


def test_a_cap_above_the_file_limit_shrinks_to_what_fits_instead_of_failing_writes(socket_path: Path, store: Path) -> None:
    daemon = DaemonProcess(socket_path, "--max-open-files", "600", "--max-connections", "16", file_limit=256).start()
    client = client_for(store, socket_path)
    try:
        run_id = client.create_run("0").info.run_id
        for step in range(2):
            for key in range(400):
                client.log_metric(run_id, f"m{key}", 0.5, 1000, step)
        client.flush(timeout=30)
        assert metric_lines(store, run_id, "m399") == ["1000 0.5 0", "1000 0.5 1"]
        assert daemon.status()["write_errors"] == 0
        assert daemon.log().count("Out of file descriptors") == 1
    finally:
        client.close(timeout=5)
        daemon.stop()


def test_trackd_daemon_args_configure_a_daemon_and_the_command_line_wins(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A daemon a client starts by itself inherits the client's environment: the only way to set its flags.
    monkeypatch.setenv("TRACKD_DAEMON_ARGS", "--max-age 0.2 --max-records '1000'")
    daemon = DaemonProcess(socket_path, "--max-records", "2000").start()
    try:
        wait_for(lambda: "listening on" in daemon.log(), message="the start line")
        assert "writes of up to 2000 events or after 200 ms" in daemon.log()
    finally:
        daemon.stop()


def test_a_store_that_cannot_be_written_as_a_whole_counts_its_events_refused_not_written(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    # records_written went negative (-1,000 for this batch) once failures counted their events.
    root = tmp_path / "mlruns"
    root.write_text("a file where the store should be")
    run_id = uuid.uuid4().hex
    raw = RawClient(daemon.paths.socket, timeout=5.0)
    try:
        assert isinstance(raw.hello(str(root)), Welcome)
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 999)]))
        rejected = raw.next_event()
        assert raw.next_event() == Ack(seq=1)
    finally:
        raw.close()
    assert isinstance(rejected, Rejected) and rejected.events == 1000, rejected
    status = daemon.status()
    assert (status["records_written"], status["events_rejected"]) == (0, 1000)


def test_a_client_refused_again_and_again_is_logged_once_and_counted_in_status(daemon: DaemonProcess, store: Path) -> None:
    # A job still running an older trackd after an upgrade retries every 2 s for days: each
    # refusal was a warning line in the daemon's log (~40,000 a day per job).
    messages = set()
    for _ in range(5):
        raw = RawClient(daemon.paths.socket)
        try:
            reply = raw.hello(str(store), protocol_version=PROTOCOL_VERSION + 1)
            assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.VERSION_MISMATCH
            messages.add(reply.message)
        finally:
            raw.close()
    assert daemon.log().count("Refused client") == 1, daemon.log()
    assert daemon.status()["errors"] == {f"Refused clients: {messages.pop()}": 5}


def test_status_uptime_is_a_duration_when_the_wall_clock_steps_back(socket_path: Path, tmp_path: Path) -> None:
    # Uptime was wall-clock time minus the start's: after an NTP step back of an hour (a VM resumed
    # from a snapshot), status said "uptime -3600 s" and rates "over the last -3.6e+03 s"; a step
    # forward made the daemon forget, at once, the sequence numbers it recovered from the journal.
    stepped = tmp_path / "stepped"
    preamble = (
        "import os, time\nwall = time.time\n"
        f"time.time = lambda: wall() - (3600 if os.path.exists({str(stepped)!r}) else 0)"
    )
    proc = DaemonProcess(socket_path, preamble=preamble).start()
    try:
        stepped.touch()
        assert 0 <= float(str(query_status(socket_path)["uptime_s"])) < 60
    finally:
        assert proc.stop() == 0


def test_a_client_back_after_its_session_was_forgotten_resumes_after_what_was_written(socket_path: Path, store: Path) -> None:
    # A client gave a stalled daemon up and spooled its batches, which the daemon then wrote; the
    # spool came back (trackd sync, or another client delivering an exited process's spool) after
    # the daemon had forgotten the session (SESSION_TTL, 300 s, here 1 s) and been restarted,
    # and the daemon welcomed it at batch 0: 40,000 points in the store, 30,000 of them distinct.
    run_id = uuid.uuid4().hex
    batch = Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 3)])

    def daemon_with_short_ttl() -> DaemonProcess:
        return DaemonProcess(socket_path, preamble="from trackd.daemon import _state\n_state.SESSION_TTL = 1.0").start()

    def resume_seq() -> int:
        raw = RawClient(socket_path)
        try:
            welcome = raw.hello(str(store), client_id="spooled-client")
            assert isinstance(welcome, Welcome)
            if welcome.resume_seq < batch.seq:
                raw.send(batch)  # what a spool delivery sends: every batch after resume_seq
                assert isinstance(raw.next_event(), Ack)
            return welcome.resume_seq
        finally:
            raw.close()

    process = daemon_with_short_ttl()
    try:
        assert resume_seq() == 0  # first delivery: written
        wait_for(lambda: query_status(socket_path)["clients_known"] == 0, 15, message="the session forgotten")
        assert resume_seq() == 1  # back after its session was forgotten
    finally:
        assert process.stop() == 0
    process = daemon_with_short_ttl()  # the journal carries what was written to the next daemon
    try:
        time.sleep(2.5)  # more than SESSION_TTL after its start
        assert resume_seq() == 1
    finally:
        assert process.stop() == 0
    assert [line.split()[2] for line in metric_lines(store, run_id, "loss")] == ["0", "1", "2"]


def test_a_client_written_again_since_the_journals_snapshot_is_not_the_first_forgotten_at_the_next_start(
    socket_path: Path, store: Path
) -> None:
    # A daemon keeps the highest written batch of its MAX_RETIRED_CLIENTS latest clients, the
    # oldest going first. At start it took "oldest" from the journal's order: a client already in
    # the last snapshot kept its place there when later writes raised its seq, so the client
    # written last was the first forgotten, and its unacknowledged batches resent to the new
    # daemon were written twice (Welcome.resume_seq 0). Here its write is the journal's last.
    paths = DaemonPaths(socket_path)
    snapshot = {"returning": 5, **{f"old-{i}": 1 for i in range(_state.MAX_RETIRED_CLIENTS - 1)}}
    with open(paths.journal, "w") as journal:
        journal.write(json.dumps({"snapshot": snapshot}) + "\n")
        journal.write(json.dumps({"begin": 1, "files": [], "seqs": {"newcomer": 1, "returning": 9}}) + "\n")
        journal.write(json.dumps({"commit": 1}) + "\n")
    daemon = DaemonProcess(socket_path).start()
    raw = RawClient(socket_path)
    try:
        assert raw.hello(str(store), client_id="returning") == Welcome(
            protocol_version=PROTOCOL_VERSION, daemon_pid=daemon.pid, resume_seq=9
        )
    finally:
        raw.close()
        assert daemon.stop() == 0, daemon.log()
