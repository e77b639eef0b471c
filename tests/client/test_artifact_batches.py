"""Artifact records without content (empty folders, files sent by path) share their batch.

Only an artifact's inline content (up to 8 MiB) must end its batch, to keep the frame under
MAX_FRAME_SIZE. Every artifact record used to end it, so a tree of 1,000 empty folders (a
dataset's layout, a checkpoint folder per epoch not written yet) went as 1,000 batches, each an
Ack round trip and a store write of its own.
"""

from __future__ import annotations

from pathlib import Path

from helpers import DaemonProcess

from trackd import Client, ClientConfig


def test_a_tree_of_empty_folders_travels_in_a_few_batches(tmp_path: Path, store: Path, daemon: DaemonProcess) -> None:
    source = tmp_path / "layout"
    for i in range(1000):
        (source / f"split-{i:04d}").mkdir(parents=True)
    (source / "split-0000" / "README").write_text("one small file, inline")
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run("0").info.run_id
        client.log_artifacts(run_id, source)
        report = client.flush()
    folders = sorted(path.name for path in (store / "0" / run_id / "artifacts").iterdir())
    assert folders == [f"split-{i:04d}" for i in range(1000)]
    assert (store / "0" / run_id / "artifacts" / "split-0000" / "README").read_text() == "one small file, inline"
    # The run's creation, the inline file's batch and the folders: it was over 1,000.
    assert report.acked_batches <= 5, report
