"""The daemon as a security boundary: who may connect, where data may go, what a value may be, and
what one connection may cost the others. Every case runs against a real daemon process; the table
of inputs and responses is in docs/security.md.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_lines, refusal, short_socket_path, wait_for

import trackd
from trackd.client import ClientConfig
from trackd.protocol import (
    MAX_FRAME_SIZE,
    Ack,
    BadBatch,
    Batch,
    ConnectionClosed,
    Dropped,
    ErrorCode,
    ErrorReply,
    Event,
    Flush,
    FlushDone,
    GetStatus,
    PROTOCOL_VERSION,
    Rejected,
    RecordKind,
    State,
    StatusReply,
    Welcome,
    decode_body,
)

pytestmark = pytest.mark.timeout(90)

METRIC, PARAM, TAG, ARTIFACT = (RecordKind.METRIC.value, RecordKind.PARAM.value, RecordKind.TAG.value, RecordKind.ARTIFACT.value)
SERIES = RecordKind.METRIC_SERIES.value
TS = 1_700_000_000_000
NOBODY = 65534


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def packed(value: object) -> bytes:
    return frame(msgpack.packb(value, use_bin_type=True))


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonProcess]:
    """One daemon for the table-driven cases (starting one per case would cost a second each)."""
    path = short_socket_path()
    proc = DaemonProcess(path).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"daemon exited with {code}:\n{proc.log()}"


def exchange(
    socket_path: Path, store: Path, *records: tuple[Any, ...], raw: bytes = b"", hello: bool = True, eof: bool = False
) -> list[Event]:
    """Hello, then a Batch of ``records`` (or ``raw`` bytes): the replies up to its Ack or the daemon's close.

    ``eof`` closes our side after sending (a frame cut short is only an error once the peer is gone).
    """
    client = RawClient(socket_path)
    events: list[Event] = []
    try:
        if hello:
            assert isinstance(client.hello(str(store), client_id=uuid.uuid4().hex), Welcome)
        else:
            client.protocol.state = State.AWAIT_WELCOME  # the raw bytes are our Hello
        if records:
            client.send(Batch(seq=1, records=list(records)))
        client.send_bytes(raw)
        if eof:
            client.sock.shutdown(socket.SHUT_WR)
        while not isinstance(event := client.next_event(), ConnectionClosed):
            events.append(event)
            if isinstance(event, Ack):
                break
        return events
    finally:
        client.close()


def created_run(socket_path: Path, store: Path) -> str:
    run_id = uuid.uuid4().hex
    assert exchange(socket_path, store, create_run_record(run_id)) == [Ack(seq=1)]
    return run_id


# -- who may connect ---------------------------------------------------------------------------


CONNECT_AS_NOBODY = r"""
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
os.setgid(65534)
os.setuid(65534)
sock.settimeout(10)
sock.connect(sys.argv[1])
try:
    sock.sendall(bytes.fromhex(sys.argv[2]))
except BrokenPipeError:
    pass  # the daemon refuses before it reads anything; its reply is still there to read
data = b""
while chunk := sock.recv(65536):
    data += chunk
print(data.hex())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another uid (os.setuid(65534))")
def test_connection_from_another_uid_is_refused_as_forbidden_and_logged(daemon: DaemonProcess, store: Path) -> None:
    # The 0700 folder and 0600 socket would stop the child at connect(); loosen them so that the
    # daemon's own check (SO_PEERCRED) is what refuses it.
    daemon.paths.directory.chmod(0o711)
    daemon.paths.socket.chmod(0o666)
    hello = packed([1, PROTOCOL_VERSION, "intruder", 1, "elsewhere", str(store)])
    result = subprocess.run(
        [sys.executable, "-c", CONNECT_AS_NOBODY, str(daemon.paths.socket), hello.hex()],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    reply = decode_body(bytes.fromhex(result.stdout.strip())[4:])
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.FORBIDDEN
    assert f"runs as uid {NOBODY}" in reply.message and f"serves only uid {os.getuid()}" in reply.message
    assert "Refused a connection (forbidden)" in daemon.log()
    assert daemon.status()["connections_refused"] == 1
    assert not store.exists()  # nothing of the intruder's Hello was acted on


def test_connections_over_the_limit_are_refused_and_the_others_served(socket_path: Path, store: Path) -> None:
    proc = DaemonProcess(socket_path, "--max-connections", "2").start()
    first, second = RawClient(socket_path), RawClient(socket_path)
    try:
        assert isinstance(first.hello(str(store), client_id="a"), Welcome)
        assert isinstance(second.hello(str(store), client_id="b"), Welcome)
        reply = refusal(socket_path)
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS
        assert "--max-connections 2" in reply.message
        first.send(Batch(seq=1, records=[create_run_record(uuid.uuid4().hex)]))
        assert first.next_event() == Ack(seq=1)
    finally:
        first.close()
        second.close()
        assert proc.stop() == 0, proc.log()


def test_a_flush_barrier_over_the_limit_is_refused_and_the_connection_goes_on(socket_path: Path, store: Path) -> None:
    # The daemon closed the connection at barrier 1025; the client sent every barrier again on
    # the next connection, over the limit again, and so on until the batch was written.
    # With a minute's max_age the batch stays pending, so every Flush waits behind it.
    proc = DaemonProcess(socket_path, "--max-age", "60").start()
    client = RawClient(socket_path)
    try:
        assert isinstance(client.hello(str(store)), Welcome)
        # One write, so that the daemon reads every barrier before its writer answers any.
        frames = [client.protocol.send(Batch(seq=1, records=[create_run_record(uuid.uuid4().hex)]))]
        frames += [client.protocol.send(Flush(request_id=request_id)) for request_id in range(1, 1026)]
        client.send_bytes(b"".join(frames))
        refusal = client.next_event()
        assert isinstance(refusal, ErrorReply) and refusal.code == ErrorCode.REQUEST_FAILED and refusal.request_id == 1025
        assert "at most 1024 may wait at once" in refusal.message
        replies = [client.next_event() for _ in range(1 + 1024)]  # the Ack, and every other barrier answered
        assert replies[0] == Ack(seq=1)
        assert [r.request_id for r in replies[1:] if isinstance(r, FlushDone)] == list(range(1, 1025))
        client.send(GetStatus(request_id=1026))
        status = client.next_event()
        assert isinstance(status, StatusReply) and status.request_id == 1026
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()


def test_a_whole_request_frame_that_breaks_the_protocol_is_named_by_its_request_id(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    # Unnamed, the client sent the request again on every connection (a daemon of a later trackd
    # that checks a field more strictly than the client does, here an empty experiment name).
    events = exchange(shared_daemon.paths.socket, tmp_path / "mlruns", raw=packed([7, 5, "", None, {}]), eof=True)
    named, closing = events
    assert isinstance(named, ErrorReply) and named.request_id == 5 and named.code == ErrorCode.BAD_FRAME
    assert isinstance(closing, ErrorReply) and closing.request_id == 0 and closing.message == named.message
    assert "CreateExperiment.name must be a non-empty string" in named.message


# -- what one connection may cost the others ---------------------------------------------------

FLOODER = r"""
import os, socket, sys, threading
sys.path.insert(0, sys.argv[3])
from helpers import RawClient, create_run_record, metric_records
from trackd.protocol import Batch, Connection, GetStatus, Role
client = RawClient(sys.argv[1])
client.hello(sys.argv[2], client_id="flooder")
run_id = os.urandom(16).hex()
def drain():
    while client.sock.recv(1 << 20):
        pass
threading.Thread(target=drain, daemon=True).start()
client.send(Batch(seq=1, records=[create_run_record(run_id)]))
records = metric_records(run_id, "flood", 2000)
seq = 1
print("flooding", flush=True)
while True:
    seq += 1
    client.send(Batch(seq=seq, records=records))
    client.send(GetStatus(request_id=seq))
"""


def flush_latencies(client: trackd.Client, run_id: str, rounds: int, start_step: int) -> list[float]:
    latencies = []
    for round_ in range(rounds):
        for step in range(start_step + round_ * 10, start_step + round_ * 10 + 10):
            client.log_metric(run_id, "loss", 0.5, step=step)
        t0 = time.perf_counter()
        client.flush(timeout=20)
        latencies.append(time.perf_counter() - t0)
    return latencies


def test_slowloris_and_flooder_do_not_starve_a_normal_client(daemon: DaemonProcess, store: Path) -> None:
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, connect_timeout=5.0)
    with trackd.Client(str(store), config=config) as client:
        run_id = client.create_run("0").info.run_id
        unloaded = sorted(flush_latencies(client, run_id, 20, 0))[10]
        # Slowloris: a valid Hello, then half a frame, then silence for the rest of the test.
        slow = RawClient(daemon.paths.socket)
        assert isinstance(slow.hello(str(store), client_id="slowloris"), Welcome)
        slow.send_bytes((1000).to_bytes(4, "big") + b"\x93\x03")
        helpers_dir = str(Path(__file__).resolve().parent.parent)
        flooder = subprocess.Popen(
            [sys.executable, "-c", FLOODER, str(daemon.paths.socket), str(store), helpers_dir],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert flooder.stdout is not None and flooder.stdout.readline().strip() == "flooding"
            time.sleep(0.3)  # let the flood fill the daemon's backlog first
            loaded = sorted(flush_latencies(client, run_id, 20, 1000))[10]
            assert flooder.poll() is None, "the flooder was disconnected; it should be served, not starved either"
        finally:
            flooder.kill()
            flooder.wait(10)
            assert flooder.stdout is not None
            flooder.stdout.close()
            slow.close()
    # Loose on purpose: CI machines are noisy and the flooder shares the writer thread (its points
    # are real writes). The precise numbers come from benchmarks/bench_fairness.py; this catches
    # starvation (a loop that never yields makes the flush wait for the whole flood).
    assert loaded <= max(5 * unloaded, 1.0), f"median flush {loaded * 1000:.1f} ms under load vs {unloaded * 1000:.1f} ms unloaded"
    assert len(metric_lines(store, run_id, "loss")) == 400
    assert daemon.status()["pid"] == daemon.pid  # up and answering


# -- where data may go -------------------------------------------------------------------------


def snapshot(folder: Path, skip: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry below ``folder`` except ``skip``: kind, mode and a content hash."""
    entries: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            entries[str(path.relative_to(folder))] = (oct(info.st_mode), info.st_size, digest)
    return entries


def plant_folder_link(run: Path, outside: Path, name: str) -> None:
    target = run / name
    for child in target.iterdir():
        child.unlink()
    target.rmdir()
    target.symlink_to(outside, target_is_directory=True)


ESCAPES: list[Any] = [
    pytest.param(None, (METRIC, "{run}", "../../../outside/victim", 1.0, TS, 0), "Invalid metric key", id="metric-key-dotdot"),
    pytest.param(None, (METRIC, "{run}", "/tmp/evil", 1.0, TS, 0), "Invalid metric key", id="metric-key-absolute"),
    pytest.param(None, (SERIES, "{run}", "../../../outside/victim", (1.0, 2.0), (TS, TS), (0, 1)), "Invalid metric key", id="series-key-dotdot"),
    pytest.param(None, (PARAM, "{run}", "../../x", "v"), "Invalid param key", id="param-key-dotdot"),
    pytest.param(None, (TAG, "{run}", "a/../../b", "v"), "Invalid tag key", id="tag-key-dotdot"),
    pytest.param(None, (METRIC, "../../outside", "loss", 1.0, TS, 0), "Invalid run id", id="run-id-dotdot"),
    pytest.param(None, (ARTIFACT, "{run}", "../../../outside/victim", b"x", None), "Invalid artifact path", id="artifact-dotdot"),
    pytest.param(None, (ARTIFACT, "{run}", "/tmp/evil", b"x", None), "Invalid artifact path", id="artifact-absolute"),
    pytest.param("metrics-folder-link", (METRIC, "{run}", "victim", 1.0, TS, 0), "resolves to", id="metrics-folder-symlink"),
    pytest.param("params-folder-link", (PARAM, "{run}", "victim", "v"), "resolves to", id="params-folder-symlink"),
    pytest.param("tags-folder-link", (TAG, "{run}", "victim", "v"), "resolves to", id="tags-folder-symlink"),
    pytest.param("artifacts-folder-link", (ARTIFACT, "{run}", "victim", b"x", None), "resolves to", id="artifacts-folder-symlink"),
    pytest.param("metric-file-link", (METRIC, "{run}", "loss", 1.0, TS, 0), "is a symbolic link", id="metric-file-symlink"),
    pytest.param("metric-file-link", (SERIES, "{run}", "loss", (1.0,), (TS,), (0,)), "is a symbolic link", id="series-file-symlink"),
    pytest.param("param-file-link", (PARAM, "{run}", "lr", "0.1"), "is a symbolic link", id="param-file-symlink"),
    pytest.param("metric-fifo", (METRIC, "{run}", "loss", 1.0, TS, 0), "is a FIFO", id="metric-file-fifo"),
    pytest.param(None, (ARTIFACT, "{run}", "zeros", None, "/dev/zero"), "not a regular file", id="artifact-source-device"),
]


@pytest.mark.parametrize(("plant", "record", "expected"), ESCAPES)
def test_path_escapes_are_refused_and_nothing_outside_the_store_changes(
    shared_daemon: DaemonProcess, tmp_path: Path, plant: str | None, record: tuple[Any, ...], expected: str
) -> None:
    store, outside = tmp_path / "mlruns", tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    run_id = created_run(shared_daemon.paths.socket, store)
    run = store / "0" / run_id
    if plant is not None and plant.endswith("folder-link"):
        plant_folder_link(run, outside, plant.split("-")[0])
    elif plant == "metric-file-link":
        (run / "metrics" / "loss").symlink_to(outside / "victim")
    elif plant == "param-file-link":
        (run / "params" / "lr").symlink_to(outside / "victim")
    elif plant == "metric-fifo":
        os.mkfifo(run / "metrics" / "loss")
    before = snapshot(tmp_path, skip=store)
    record = tuple(run_id if field == "{run}" else field for field in record)
    events = exchange(shared_daemon.paths.socket, store, record)
    assert snapshot(tmp_path, skip=store) == before
    assert len(events) == 2 and isinstance(events[0], Rejected) and events[1] == Ack(seq=1), events
    assert expected in events[0].message, events[0].message
    # The record is refused, not the whole write of its store (which left the journal uncommitted).
    assert events[0].item != "batch", events[0]
    assert shared_daemon.process is not None and shared_daemon.process.poll() is None


# -- values ------------------------------------------------------------------------------------


def _invalid_utf8_key(run_id: str) -> bytes:
    body = msgpack.packb([3, 1, [[METRIC, run_id, "KEYX", 1.0, TS, 0]]], use_bin_type=True)
    return frame(body.replace(b"KEYX", b"K\xffYX"))


def _deep(run_id: str) -> bytes:
    return frame(b"\x93\x03\x01" + b"\x91" * 5000 + b"\xc0")


def _ext(run_id: str) -> bytes:
    return packed([3, 1, [[METRIC, run_id, "loss", msgpack.ExtType(5, b"x"), TS, 0]]])


def _batch(*record: object) -> Any:
    return lambda run_id: packed([3, 1, [[field if field != "{run}" else run_id for field in record]]])


# (id, frame builder, expected: ("kept", metric line) | ("rejected", text) | ("bad_frame", text)
# | ("bad_batch", text): bad_frame, the whole Batch frame named (BadBatch) so its client drops just it)
VALUES: list[Any] = [
    pytest.param(_batch(METRIC, "{run}", "m", float("nan"), TS, 0), ("kept", f"{TS} nan 0"), id="nan-kept"),
    pytest.param(_batch(METRIC, "{run}", "m", float("inf"), TS, 0), ("kept", f"{TS} inf 0"), id="inf-kept"),
    pytest.param(_batch(METRIC, "{run}", "m", float("-inf"), TS, 0), ("kept", f"{TS} -inf 0"), id="minus-inf-kept"),
    pytest.param(_batch(METRIC, "{run}", "m", "1.5", TS, 0), ("bad_batch", "field 'value'"), id="value-string"),
    pytest.param(_batch(METRIC, "{run}", "m", True, TS, 0), ("bad_batch", "field 'value'"), id="value-bool"),
    pytest.param(_batch(METRIC, "{run}", "m", None, TS, 0), ("bad_batch", "field 'value'"), id="value-nil"),
    pytest.param(_batch(METRIC, "{run}", "m", 2**64 - 1, TS, 0), ("bad_batch", "field 'value'"), id="value-uint64"),
    pytest.param(_batch(METRIC, "{run}", "m", b"\x00", TS, 0), ("bad_batch", "field 'value'"), id="value-bytes"),
    pytest.param(_batch(METRIC, "{run}", "m", 1.0, TS, 1.5), ("bad_batch", "field 'step'"), id="step-float"),
    pytest.param(_batch(METRIC, "{run}", "m", 1.0, TS, "3"), ("bad_batch", "field 'step'"), id="step-string"),
    pytest.param(_batch(METRIC, "{run}", "m", 1.0, float(TS), 0), ("bad_batch", "field 'timestamp_ms'"), id="timestamp-float"),
    pytest.param(_batch(METRIC, "{run}", "m", 1.0, -1, 0), ("bad_batch", "field 'timestamp_ms'"), id="timestamp-negative"),
    pytest.param(_batch(METRIC, "{run}", "a\nb", 1.0, TS, 0), ("rejected", "Invalid metric key 'a\\nb'"), id="key-newline"),
    pytest.param(_batch(METRIC, "{run}", "x\n", 1.0, TS, 0), ("rejected", "Invalid metric key 'x\\n'"), id="key-trailing-newline"),
    pytest.param(_batch(METRIC, "{run}", "a\x00b", 1.0, TS, 0), ("rejected", "Invalid metric key 'a\\x00b'"), id="key-nul"),
    pytest.param(_batch(PARAM, "{run}", "p\n", "v"), ("rejected", "Invalid param key"), id="param-key-newline"),
    pytest.param(_batch(TAG, "{run}", "t\x00", "v"), ("rejected", "Invalid tag key"), id="tag-key-nul"),
    pytest.param(_batch(METRIC, "bad\nrun", "m", 1.0, TS, 0), ("rejected", "Invalid run id"), id="run-id-newline"),
    pytest.param(_invalid_utf8_key, ("bad_frame", "field 'key' is not valid UTF-8"), id="key-invalid-utf8"),
    pytest.param(_batch(METRIC, "{run}", "k" * 2000, 1.0, TS, 0), ("bad_batch", "field 'key'"), id="key-huge"),
    pytest.param(_batch(METRIC, "{run}", "k" * 300, 1.0, TS, 0), ("rejected", "at most 250"), id="key-over-mlflow-limit"),
    pytest.param(_batch(PARAM, "{run}", "p", "v" * 100_000), ("bad_batch", "field 'value'"), id="param-value-huge"),
    pytest.param(_batch(PARAM, "{run}", "p", "v" * 7000), ("rejected", "at most 6000"), id="param-value-over-mlflow-limit"),
    pytest.param(_batch(TAG, "{run}", "t", 5), ("bad_batch", "field 'value'"), id="tag-value-int"),
    pytest.param(_deep, ("bad_frame", "deeper than msgpack's limit"), id="deep-nesting"),
    pytest.param(_ext, ("bad_frame", "extension types"), id="ext-type"),
    pytest.param(lambda run_id: packed([99, 1]), ("bad_frame", "Unknown event code 99"), id="unknown-event"),
    pytest.param(_batch(42, "{run}"), ("bad_batch", "Unknown record kind 42"), id="unknown-record-kind"),
    pytest.param(_batch(METRIC, "{run}", "m", 1.0), ("bad_batch", "has 3 fields; expected 5"), id="record-too-short"),
    pytest.param(lambda run_id: packed([3, 1, [[5, run_id, "0", "u", "n", TS, {"k": 1}]]]), ("bad_batch", "tag 'k'"), id="run-tag-value-int"),
    pytest.param(lambda run_id: packed([5, 1, 2]), ("bad_frame", "Flush frame has 2 fields"), id="event-extra-field"),
    pytest.param(lambda run_id: packed([3, 1, {1: 2}]), ("bad_frame", "not allowed for map key"), id="map-int-key"),
    pytest.param(lambda run_id: (MAX_FRAME_SIZE + 1).to_bytes(4, "big"), ("bad_frame", "MAX_FRAME_SIZE"), id="oversized-header"),
    pytest.param(lambda run_id: b"\x00\x00\x01\x00\x93", ("bad_frame", "in the middle of a frame"), id="truncated-frame"),
]


@pytest.mark.parametrize(("build", "expected"), VALUES)
def test_value_rules_hold_at_the_daemon_boundary(
    shared_daemon: DaemonProcess, tmp_path: Path, build: Any, expected: tuple[str, str]
) -> None:
    store = tmp_path / "mlruns"
    run_id = created_run(shared_daemon.paths.socket, store)
    outcome, text = expected
    events = exchange(shared_daemon.paths.socket, store, raw=build(run_id), eof=outcome in ("bad_frame", "bad_batch"))
    if outcome == "kept":
        assert events == [Ack(seq=1)]
        assert metric_lines(store, run_id, "m") == [text]
    elif outcome == "rejected":
        assert len(events) == 2 and isinstance(events[0], Rejected) and events[1] == Ack(seq=1), events
        assert text in events[0].message, events[0].message
    else:
        *named, reply = events
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME
        assert text in reply.message, reply.message
        assert named == ([BadBatch(seq=1, message=reply.message)] if outcome == "bad_batch" else [])
    assert shared_daemon.process is not None and shared_daemon.process.poll() is None


def test_invalid_utf8_in_hello_names_the_field(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    body = msgpack.packb([1, PROTOCOL_VERSION, "CID", 1, "h", str(tmp_path)], use_bin_type=True)
    (reply,) = exchange(shared_daemon.paths.socket, tmp_path, raw=frame(body.replace(b"CID", b"C\xc3(")), hello=False, eof=True)
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME
    assert "Hello.client_id is not valid UTF-8" in reply.message


def test_store_root_below_an_artifacts_folder_is_refused(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    client = RawClient(shared_daemon.paths.socket)
    try:
        reply = client.hello(str(tmp_path / "artifacts" / "mlruns"))
    finally:
        client.close()
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.REQUEST_FAILED
    assert "below a folder named 'artifacts'" in reply.message
    assert not (tmp_path / "artifacts").exists()


def test_daemon_answers_after_all_of_it(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    # Its own garbage too: under pytest-xdist the table's cases may all run on the other worker,
    # and this test then found none of theirs and failed.
    before = shared_daemon.status()["protocol_errors"]
    for _ in range(20):
        exchange(shared_daemon.paths.socket, tmp_path / "mlruns", raw=packed([7, 5, "", None, {}]), eof=True)
    wait_for(lambda: shared_daemon.status()["clients_connected"] == 0, message="every test connection to close")
    assert shared_daemon.status()["protocol_errors"] >= before + 20


def test_status_survives_clients_reporting_huge_drop_counts(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    # This used to raise OverflowError out of the daemon's send(): two clients' Dropped totals
    # (each a legal int64) summed past what msgpack can pack, and every later status request failed.
    clients = [RawClient(shared_daemon.paths.socket) for _ in range(2)]
    try:
        for number, client in enumerate(clients):
            assert isinstance(client.hello(str(tmp_path / "mlruns"), client_id=f"dropper-{number}"), Welcome)
            client.send(Dropped(total=2**63 - 1))
        wait_for(lambda: shared_daemon.status()["events_dropped_by_clients"] == 2**63 - 1, message="the capped drop count")
    finally:
        for client in clients:
            client.close()


def test_a_store_root_with_a_nul_is_refused_and_costs_no_other_client_its_batch(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # Writes are due at two records (--max-records 2) and never by age, so the two clients' batches
    # share one write. A NUL in a store root used to be welcomed; its write raised ValueError, and
    # the daemon rejected every batch of that write: the neighbour's run was refused and lost.
    daemon = DaemonProcess(socket_path, "--max-records", "2", "--max-age", "600").start()
    good, bad = RawClient(socket_path), RawClient(socket_path)
    try:
        assert isinstance(good.hello(str(store), client_id=uuid.uuid4().hex), Welcome)
        run_id = uuid.uuid4().hex
        good.send(Batch(seq=1, records=[create_run_record(run_id)]))
        reply = bad.hello(str(tmp_path / "bad\0root"), client_id=uuid.uuid4().hex)
        if isinstance(reply, Welcome):
            bad.send(Batch(seq=1, records=[create_run_record(uuid.uuid4().hex)]))
            wait_for(lambda: daemon.status()["records_received"] == 2, message="both batches received")
        good.send(Flush(request_id=1))
        answers = []
        while not isinstance(answer := good.next_event(), FlushDone):
            answers.append(answer)
        assert not [a for a in answers if isinstance(a, Rejected)], answers
        assert (store / "0" / run_id / "meta.yaml").is_file()
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.REQUEST_FAILED
        assert "contains a NUL character" in reply.message
        assert "Traceback" not in daemon.log()
    finally:
        good.close()
        bad.close()
        assert daemon.stop() == 0


def test_connections_that_never_say_hello_are_closed_and_free_their_slots(socket_path: Path, store: Path) -> None:
    # A process stopped or hung right after connect() kept its slot for ever: as many of them as
    # --max-connections locked every client out. HELLO_TIMEOUT (30 s) is 1 s here.
    proc = DaemonProcess(
        socket_path, "--max-connections", "2", preamble="from trackd.daemon import _connection\n_connection.HELLO_TIMEOUT = 1.0",
    ).start()
    silent = []
    try:
        for sent in (b"", b"\x00\x00"):  # nothing at all; half a frame header, then nothing
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(str(socket_path))
            sock.sendall(sent)
            silent.append(sock)
        third = RawClient(socket_path)
        try:
            reply = third.hello(str(store))
        finally:
            third.close()
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS  # the slots are held
        for sock in silent:
            assert sock.recv(4096) == b""  # closed after HELLO_TIMEOUT
        fourth = RawClient(socket_path)
        try:
            assert isinstance(fourth.hello(str(store)), Welcome)
        finally:
            fourth.close()
        assert proc.status()["protocol_errors"] == 2
    finally:
        for sock in silent:
            sock.close()
        assert proc.stop() == 0
    # Both of this process: said once (tests/daemon/test_protocol_errors_said_once.py).
    assert proc.log().count(f"A connection of pid {os.getpid()} sent no Hello within 1 s of connecting and was closed") == 1
