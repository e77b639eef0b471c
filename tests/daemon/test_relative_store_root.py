"""A Hello naming a relative store root is refused, saying which field; nothing is made anywhere.

The daemon resolved a relative ``store_root`` against its own working folder, not the client's, so
the client's runs went to a store it never named. Every trackd client sends an absolute root (its
tracking URI made absolute in its own folder, as MLflow does), so such a Hello is a protocol error.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgpack
import pytest
from helpers import DaemonProcess, RawClient

from trackd import Client
from trackd.client import ClientConfig
from trackd.protocol import PROTOCOL_VERSION, ErrorCode, ErrorReply, Hello

pytestmark = pytest.mark.timeout(60)


def frame(fields: list[object]) -> bytes:
    """A frame of ``fields`` (the event's code first), as docs/protocol.md lays it out."""
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def test_a_relative_store_root_is_refused_naming_the_field(socket_path: Path, tmp_path: Path) -> None:
    # The daemon runs in daemon-cwd, where a relative root would have been made.
    daemon_folder = tmp_path / "daemon-cwd"
    daemon_folder.mkdir()
    here = Path.cwd()
    os.chdir(daemon_folder)
    try:
        daemon = DaemonProcess(socket_path).start()
    finally:
        os.chdir(here)
    try:
        raw = RawClient(socket_path)
        # No Hello of a relative root can be made here (its constructor refuses it, as the daemon's
        # decoding does), so its frame is packed by hand; the protocol is told a valid one went.
        valid = Hello(protocol_version=PROTOCOL_VERSION, client_id="relative", pid=os.getpid(), host="test", store_root="/")
        raw.protocol.send(valid)
        raw.send_bytes(frame([1, PROTOCOL_VERSION, "relative", os.getpid(), "test", "relative/mlruns", None]))
        reply = raw.next_event()
        # Before: Welcome, and the client's batches were written under daemon-cwd/relative/mlruns.
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME, reply
        assert raw.events_until_closed() == []
        raw.close()
        assert reply.message == (
            "Hello.store_root must be an absolute path (or empty, for a control connection), got 'relative/mlruns'."
        )
        assert daemon.status()["protocol_errors"] == 1
        assert list(daemon_folder.iterdir()) == []
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_client_given_a_relative_store_sends_it_absolute(
    socket_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = DaemonProcess(socket_path).start()
    try:
        monkeypatch.chdir(tmp_path)
        with Client("mlruns", config=ClientConfig(socket_path=socket_path, autostart=False)) as client:
            run_id = client.create_run().info.run_id
            client.flush()
        assert (tmp_path / "mlruns" / "0" / run_id / "meta.yaml").is_file()
        assert daemon.status()["protocol_errors"] == 0
    finally:
        assert daemon.stop() == 0, daemon.log()
