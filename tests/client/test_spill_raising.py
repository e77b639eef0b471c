"""A spill that fails with something other than an OSError loses none of the events it took.

The sender thread takes records for the spool file under its lock and writes them outside it;
what the write raised besides an OSError (a MemoryError, a spool folder whose name cannot be
encoded) left them counted as on their way to the file for good: in neither the buffer, the
unacknowledged batches nor the file, never sent, and pending() never 0 again.
"""

from __future__ import annotations

from pathlib import Path

from helpers import DaemonProcess, steps_in_store, wait_for

from trackd.client import Client, ClientConfig


def test_a_spill_that_raises_no_oserror_keeps_its_events_for_the_daemon(
    socket_path: Path, store: Path, tmp_path: Path,
) -> None:
    # A lone surrogate: the folder's name cannot be encoded, so making it raises UnicodeEncodeError.
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=0.2, spool_dir=tmp_path / "spool-\ud800")
    with Client(str(store), config=config) as client:
        run_id = client.create_run("0").info.run_id
        for step in range(100):
            client.log_metric(run_id, "x", float(step), step=step)
        # The spill took them (and failed): none is in the buffer any more.
        wait_for(lambda: client.stats()["buffered"] == 0, message="the spill to take the buffer")
        daemon = DaemonProcess(socket_path).start()
        try:
            client.flush(timeout=30)
            assert client.pending() == 0  # this used to stay at 101
        finally:
            daemon.stop()
    assert steps_in_store(store, run_id) == list(range(100))
