"""A batch of valid records always fits in a frame: one that would exceed MAX_FRAME_SIZE is split, not lost.

The sender cuts batches by an estimate of 64 bytes a metric record. A record of a long key and
run id packs to much more: MLflow takes run ids of 256 and keys of 250 letters, and a letter takes
up to 4 bytes in UTF-8 (a file name holds at most 255 bytes, so the ones a store can hold pack to
~1.3 KB a record). 10,000 such records, or fewer before an inline artifact of up to 8 MiB, made a
frame over the 16 MiB limit, and the whole batch was refused, reported by the next flush().
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess

from trackd import Client, ClientConfig
from trackd.errors import DaemonUnavailable
from trackd.protocol import MAX_FRAME_SIZE, MAX_INLINE_ARTIFACT_SIZE

mlflow = pytest.importorskip("mlflow")

# U+1D400 MATHEMATICAL BOLD CAPITAL A: a letter (\w, so MLflow's run id and key patterns take it)
# of 4 bytes in UTF-8. The run id is 253 bytes, and the key 4 folders' worth of 244 bytes: each
# within the 255 bytes a file name may hold, so the store writes them and MLflow reads them back.
LETTER = "\U0001d400"
RUN_ID = "r" + LETTER * 63
KEY = "/".join([LETTER * 61] * 4)
BATCH_RECORDS = 10_000  # SenderState.MAX_RECORDS_PER_BATCH


@pytest.mark.timeout(180)
@pytest.mark.parametrize("via", ["send", "spool"])
def test_a_batch_over_the_frame_limit_is_split_and_every_point_arrives(
    socket_path: Path, store: Path, tmp_path: Path, via: str
) -> None:
    assert len(KEY) <= 250 and len(RUN_ID.encode()) <= 255 and max(len(part.encode()) for part in KEY.split("/")) <= 255
    # The daemon starts only after everything is logged, so the buffer is cut into batches as
    # written here: the run's creation, 9,998 points and the 8 MiB text make the first batch
    # (10,000 records, ~21 MB packed); the points after it, the next. "send": the client waits for
    # the daemon and sends the buffer over the socket; "spool": it gives the daemon up and spools.
    connect_timeout = 0.5 if via == "spool" else 60.0
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=connect_timeout, spool_dir=tmp_path / "spool")
    text = "x" * MAX_INLINE_ARTIFACT_SIZE
    before, after = BATCH_RECORDS - 2, 2_000
    assert before * (len(RUN_ID.encode()) + len(KEY.encode())) + len(text) > MAX_FRAME_SIZE
    with Client(store, config=config) as client:
        client.create_run("0", run_id=RUN_ID)
        for step in range(before):
            client.log_metric(RUN_ID, KEY, float(step), step=step)
        client.log_text(RUN_ID, text, "notes.txt")
        for step in range(before, before + after):
            client.log_metric(RUN_ID, KEY, float(step), step=step)
        if via == "spool":
            with pytest.raises(DaemonUnavailable, match="spooled"):
                client.flush(timeout=30)
        daemon = DaemonProcess(socket_path).start()
        try:
            client.flush(timeout=60)  # raised DeliveryError: "... exceeds MAX_FRAME_SIZE ..."
            assert client.pending() == 0
        finally:
            client.close()
            assert daemon.stop() == 0, daemon.log()
    reader = mlflow.MlflowClient(tracking_uri=str(store))
    assert [m.step for m in reader.get_metric_history(RUN_ID, KEY)] == list(range(before + after))
    assert reader.get_run(RUN_ID).data.metrics == {KEY: float(before + after - 1)}
    assert [(f.path, f.file_size) for f in reader.list_artifacts(RUN_ID)] == [("notes.txt", len(text))]
