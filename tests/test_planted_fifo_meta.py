"""A FIFO planted in a store where the daemon reads a file costs only the items that read it.

The daemon read a run's meta.yaml (and an experiment's tag files, when a run is made in it) with a
plain open(), which waits for a writer when the file is a FIFO: its one writer thread waited for
ever, and with it every client of every store (their flushes ran out, their events piled up). The
files it writes were already opened without blocking and refused unless regular (_confinement);
those it reads now are too, and the item that met one is refused, naming the file.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DaemonProcess, create_run_record, made_run, metric_records, replies_to_batch, steps_in_store, store_client

from trackd.protocol import Record, Rejected

pytestmark = pytest.mark.timeout(90)


def _fifo_as_run_meta(store: Path, socket_path: Path) -> tuple[Path, list[Record]]:
    """A run made by a daemon, its meta.yaml then replaced by a FIFO; the guilty records log to it."""
    run_id = made_run(store, socket_path)
    return store / "0" / run_id / "meta.yaml", metric_records(run_id, "loss", 3)


def _fifo_as_experiment_tag(store: Path, socket_path: Path) -> tuple[Path, list[Record]]:
    """A FIFO among an experiment's tags (the daemon reads them to make a run in it); the guilty
    record makes a run there."""
    made_run(store, socket_path)
    (store / "0" / "tags").mkdir(exist_ok=True)
    return store / "0" / "tags" / "team", [create_run_record(uuid.uuid4().hex)]


PLANTS: dict[str, Callable[[Path, Path], tuple[Path, list[Record]]]] = {
    "run meta.yaml": _fifo_as_run_meta,
    "experiment tag file": _fifo_as_experiment_tag,
}


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS.keys())
def test_a_fifo_where_the_daemon_reads_a_file_is_refused_and_the_daemon_writes_on(
    socket_path: Path, store: Path, tmp_path: Path, plant: Callable[[Path, Path], tuple[Path, list[Record]]]
) -> None:
    innocent_run = made_run(store, socket_path)
    fifo, guilty_records = plant(store, socket_path)
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    other_store = tmp_path / "other"
    daemon = DaemonProcess(socket_path).start()
    try:
        # This used to time out: the writer thread waited in open() for a writer to the FIFO.
        replies = replies_to_batch(daemon.paths.socket, store, guilty_records)
        assert replies and all(isinstance(r, Rejected) for r in replies), replies
        expected = f"Refusing to read {str(fifo)!r}: it is a FIFO, expected a regular file"
        assert all(expected in r.message for r in replies if isinstance(r, Rejected)), replies
        # Other clients, of this store (a run made before the FIFO was) and of another, are written as ever.
        for root, run_id in ((store, innocent_run), (other_store, None)):
            with store_client(root, socket_path) as client:
                run_id = run_id or client.create_run("0").info.run_id
                for step in range(100):
                    client.log_metric(run_id, "x", float(step), step=step)
                client.flush(timeout=20)
            assert steps_in_store(root, run_id) == list(range(100))
        assert daemon.status()["pid"] == daemon.pid
    finally:
        try:
            code = daemon.stop(timeout=30)
        except subprocess.TimeoutExpired:  # the old code's writer thread, still in open()
            daemon.kill()
            code = -1
        fifo.unlink(missing_ok=True)
    assert code == 0, daemon.log()

