"""A source the writer cannot read is that artifact's failure, naming the file, never the store's.

The daemon copies a file by path ahead of the write (tests/test_artifact_source_unreadable.py);
a StoreWriter given a source_path without a copy copies it itself, and a read error there
(/proc/self/mem: a regular file of size 0 whose read gives EIO) raised StoreUnavailable, "The
store at ... cannot be written (Input/output error)", and the whole write was refused.
"""

from __future__ import annotations

from pathlib import Path

from store_helpers import RUN_ID, metrics, writer_with_run

from trackd.store import ArtifactWrite, WriteFailure


def test_a_source_that_cannot_be_read_fails_its_artifact_alone(tmp_path: Path) -> None:
    writer, run_folder = writer_with_run(tmp_path / "mlruns")
    with writer:
        batch = metrics("loss", (1, 0.5, 0))
        batch.artifacts.append(ArtifactWrite("o", RUN_ID, "m.bin", source_path="/proc/self/mem"))
        failures = writer.write(batch)
    assert failures == [WriteFailure(
        "o", f"artifact 'm.bin' of run {RUN_ID}",
        f"Invalid source for artifact 'm.bin' of run {RUN_ID}: '/proc/self/mem' cannot be read (Input/output error).",
    )]
    assert (run_folder / "metrics" / "loss").read_text() == "1 0.5 0\n"
    assert not (run_folder / "artifacts" / "m.bin").exists()
