"""An artifact location on another filesystem mounted inside the store root refuses its artifact alone.

Whose fault a refused artifact write is was decided by "the location lies inside the store root"
before the device was looked at: an experiment's artifact_location on a full tmpfs (or a share)
mounted in a folder of the store was taken for the store's own disk, and the whole write was
refused as StoreUnavailable, every client's points with it, for as long as the location stayed
full. The device of the location decides now, inside the root too (the store's own disk full
still holds the write: tests/test_artifact_location_refused.py).
"""

from __future__ import annotations

from pathlib import Path

from helpers import fill, mounted_tmpfs
from store_helpers import START_MS, metrics, new_run

from trackd.store import ArtifactWrite, StoreWriter, WriteBatch

RUN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_a_full_filesystem_mounted_inside_the_store_refuses_its_artifact_alone(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    disk = root / "bigdisk"
    disk.mkdir(parents=True)
    with mounted_tmpfs(disk, "size=64k"):
        writer = StoreWriter(root)
        experiment_id = writer.create_experiment("elsewhere", artifact_location=(disk / "art").as_uri(), now_ms=START_MS)
        assert writer.write(WriteBatch(new_runs=[new_run(experiment_id, RUN)])) == []
        fill(disk / "filler")
        batch = metrics("loss", (1, 0.5, 0), run_id=RUN)
        batch.artifacts.append(ArtifactWrite("o", RUN, "big.bin", content=b"y" * 200_000))
        with writer:
            # This used to raise StoreUnavailable: "The store at ... cannot be written (No space left on device)".
            [failure] = writer.write(batch)
    assert failure.item == f"artifact 'big.bin' of run {RUN}"
    assert "inside the store but on a mount of its own, refused the write (No space left on device, ENOSPC" in failure.message
    assert (root / experiment_id / RUN / "metrics" / "loss").read_text() == "1 0.5 0\n"
