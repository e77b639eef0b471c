"""--max-connections fitted to the daemon's file limit: clients over it are refused with a reply,
status requests still answered, and the connected clients' new metric files still opened."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_records

from trackd.daemon._config import CONTROL_CONNECTIONS, MIN_OPEN_FILES, OWN_FILES_RESERVE, REFUSAL_RESERVE
from trackd.protocol import Ack, Batch, ErrorCode, ErrorReply, Welcome

pytestmark = pytest.mark.timeout(120)

FILE_LIMIT = 256
FITTED = FILE_LIMIT - MIN_OPEN_FILES - OWN_FILES_RESERVE - CONTROL_CONNECTIONS - REFUSAL_RESERVE


def test_idle_clients_filling_the_file_limit_leave_room_to_refuse_answer_status_and_write(socket_path: Path, store: Path) -> None:
    # With `ulimit -n 1024` and --max-connections 1024, ~1,000 idle clients used every descriptor:
    # the next clients were reset with no reply, status said the daemon was hung, and a connected
    # client's new metric files failed "Too many open files".
    daemon = DaemonProcess(socket_path, file_limit=FILE_LIMIT).start()
    held: list[RawClient] = []
    try:
        for index in range(FILE_LIMIT + 20):
            raw = RawClient(socket_path)
            held.append(raw)
            reply = raw.hello(str(store), client_id=f"idle-{index}")  # a reset raised ConnectionResetError here
            if isinstance(reply, ErrorReply):
                break
            assert isinstance(reply, Welcome), reply
        assert len(held) == FITTED + 1, len(held)
        assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS, reply
        assert f"(--max-connections {FITTED}, lowered from 1024 to fit the file limit)" in reply.message
        # More, over every limit at once, each still told why.
        for index in range(REFUSAL_RESERVE):
            late = RawClient(socket_path)
            held.append(late)
            reply = late.hello(str(store), client_id=f"late-{index}")
            assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS, reply
        # A status request is served beside the full slots.
        result = subprocess.run(
            [sys.executable, "-m", "trackd", "daemon", "status", "--socket", str(socket_path)], capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert f"; at most {FITTED} served at once, lowered from --max-connections 1024 to fit its file limit" in result.stdout
        # A connected client's new metric files open: the cache's descriptors were kept.
        run_id = uuid.uuid4().hex
        writer = held[0]
        records = [create_run_record(run_id)] + [record for key in range(2 * MIN_OPEN_FILES) for record in metric_records(run_id, f"m{key}", 1)]
        writer.send(Batch(seq=1, records=records))
        assert writer.next_event() == Ack(seq=1)
        assert (store / "0" / run_id / "metrics" / f"m{2 * MIN_OPEN_FILES - 1}").read_text() == "1700000000000 0.0 0\n"
        assert daemon.status()["write_errors"] == 0
    finally:
        for raw in held:
            raw.close()
        assert daemon.stop() == 0, daemon.log()
    log = daemon.log()
    assert log.count(f"WARNING pid {daemon.pid} Serving at most {FITTED} client connections at once, not 1024 (--max-connections): "
                     f"the file limit (RLIMIT_NOFILE) is {FILE_LIMIT}") == 1, log
    assert " ERROR " not in log, log
