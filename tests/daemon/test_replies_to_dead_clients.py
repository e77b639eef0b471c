"""A connection's end: what a client sent before it died is written, and a live client that
stopped sending still gets its replies."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_records, wait_for
from mlflow import MlflowClient

from trackd.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Connection,
    Dropped,
    ErrorCode,
    ErrorReply,
    GetStatus,
    Hello,
    Role,
    StatusReply,
    Welcome,
)

# Sends the bytes of the file it is given at once (a socket buffer of 64 MiB takes them all, unread),
# says so, and waits to be killed, reading nothing.
SEND_AND_WAIT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
for option in (32, socket.SO_SNDBUF):  # SO_SNDBUFFORCE (CAP_NET_ADMIN), else as far as wmem_max allows
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 64 << 20)
        break
    except PermissionError:
        pass
sock.connect(sys.argv[1])
if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 4 << 20:
    sys.exit(3)
sock.sendall(open(sys.argv[2], "rb").read())
print("sent", flush=True)
sys.stdin.readline()
"""


def test_batches_a_client_sent_before_it_died_are_written_when_a_reply_to_it_fails(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # A reply the daemon queued while the client was alive and not reading is written by the event
    # loop once the socket takes it: after the client died, that write failed (EPIPE) and the
    # transport closed the connection with what the client had sent still unread, its batches lost
    # with no word to anyone. The same as a client dying between send()'s look at it and its write.
    run_id, points = uuid.uuid4().hex, 3000
    protocol, daemon_side = Connection(Role.CLIENT), Connection(Role.DAEMON)
    hello = protocol.send(Hello(protocol_version=PROTOCOL_VERSION, client_id="dies", pid=1, host="test", store_root=str(store)))
    daemon_side.receive_data(hello)
    daemon_side.next_event()
    protocol.receive_data(daemon_side.send(Welcome(protocol_version=PROTOCOL_VERSION, daemon_pid=1, resume_seq=0)))
    protocol.next_event()  # the Welcome the daemon will send: the frames after the Hello are made now
    frames = [
        hello,
        # 3000 status replies (~2 MB) are more than the socket and the 1 MiB of unread replies the
        # daemon keeps: it stops reading after them. What follows, past one read of 256 KiB, waits.
        *(protocol.send(GetStatus(request_id=number)) for number in range(1, 3001)),
        *(protocol.send(Dropped(total=0)) for _ in range(300 * 1024 // 7)),
        protocol.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", points)])),
    ]
    (tmp_path / "frames").write_bytes(b"".join(frames))
    daemon = DaemonProcess(socket_path).start()
    child = subprocess.Popen(
        [sys.executable, "-c", SEND_AND_WAIT, str(socket_path), str(tmp_path / "frames")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline() != "sent\n":
            pytest.skip("a socket buffer of 4 MiB needs CAP_NET_ADMIN or a larger net.core.wmem_max")
        # Read and answered: its replies wait for the client, which reads none.
        wait_for(lambda: daemon.status()["bytes_received"] >= sum(map(len, frames[:3001])), timeout=20, message="the requests read")
        child.kill()
        child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        wait_for(lambda: daemon.status()["clients_connected"] == 0, timeout=20, message="the connection closed")
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)
        assert daemon.stop() == 0, daemon.log()
    history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(points))


def test_a_live_client_that_stopped_sending_as_the_daemon_stops_gets_its_acks(socket_path: Path, store: Path) -> None:
    # This used to close the connection at its end, before phase 3 wrote its batch and acked it, as
    # if its process had exited: a live client that had shut down its sending side, its end not
    # read yet when the daemon began to stop, got neither its Ack nor the shutting_down reply.
    daemon = DaemonProcess(socket_path, "--max-age", "3600").start()  # the batch waits for shutdown
    raw = RawClient(socket_path)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        run_id = uuid.uuid4().hex
        raw.send(Batch(seq=1, records=[create_run_record(run_id), *metric_records(run_id, "loss", 10)]))
        # Replies left unread (~2 MB of them) stop the daemon reading this connection: its end
        # (the shutdown below) is still unread when the daemon begins to stop.
        raw.send_bytes(b"".join(raw.protocol.send(GetStatus(request_id=number)) for number in range(1, 3001)))
        raw.sock.shutdown(socket.SHUT_WR)
        wait_for(lambda: daemon.status()["records_received"] == 11, timeout=20, message="the batch received")
        daemon.signal(signal.SIGTERM)
        wait_for(lambda: "Shutdown: stopping" in daemon.log(), timeout=20, message="the daemon stopping its readers")
        replies = [event for event in raw.events_until_closed() if not isinstance(event, StatusReply)]
        assert daemon.process is not None
        daemon.process.wait(30)  # stopping already: a second SIGTERM as it exits would kill it
        assert daemon.stop() == 0, daemon.log()
    finally:
        raw.close()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    assert replies[0] == Ack(seq=1)
    assert isinstance(replies[-1], ErrorReply) and replies[-1].code == ErrorCode.SHUTTING_DOWN
