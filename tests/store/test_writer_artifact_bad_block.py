"""A source with a bad block past its first byte fails its artifact alone, never the store.

The copy told a source's read error from the store's disk failing by reading one byte of the source
where the copy stopped (the daemon's copy) or its first byte (a StoreWriter copying by itself). A
real I/O error further on (a bad block) passed that probe: the error was taken for the store's
disk failing, StoreUnavailable, and the store's whole write (every client's points) held and
retried for as long as the file stayed there. The way of reads and writes now says which file
failed where it fails; the kernel's ways hand over to it when they fail.

The bad block is real: an ext4 image on a loop device, shrunk under a 40 MiB file, so that reads
past its first 20 MiB fail with EIO. Skipped where loop devices or mounts are not allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import RUN_ID, metrics, writer_with_run

from trackd.store import ArtifactWrite, WriteFailure
from trackd.store._artifact_copies import READ_WRITE, ArtifactCopy, copy_ways

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture
def bad_source(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB file whose reads fail with EIO past its first 20 MiB or so (its first byte reads)."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("needs root, mkfs.ext4 and losetup for a loop device")
    image, mount_point = tmp_path / "disk.img", tmp_path / "disk"
    with open(image, "wb") as file:
        file.truncate(64 * MIB)
    if (made := _run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image))).returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    attached = _run("losetup", "-f", "--show", str(image))
    if attached.returncode != 0:
        pytest.skip(f"no loop device here: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    mounted = False
    try:
        mount_point.mkdir()
        if (mounting := _run("mount", device, str(mount_point))).returncode != 0:
            pytest.skip(f"cannot mount a loop device here: {mounting.stderr.strip()}")
        mounted = True
        source = mount_point / "src.bin"
        block = os.urandom(MIB)
        with open(source, "wb") as file:
            for _ in range(40):
                file.write(block)
            os.fsync(file.fileno())
        with open(image, "r+b") as file:
            file.truncate(20 * MIB)  # the file's later blocks now lie past the end of the device
        subprocess.run(["losetup", "-c", device], check=True, capture_output=True)
        _drop_cache(source)
        with open(source, "rb") as file:
            assert len(file.read(1)) == 1
            try:
                file.seek(39 * MIB)
                file.read(MIB)
            except OSError:
                pass
            else:
                pytest.skip("the shrunk loop device still reads the file's end")
        yield source
    finally:
        if mounted:
            _run("umount", "-l", str(mount_point))
        _run("losetup", "-d", device)


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _refused_alone(failures: list[WriteFailure], source: Path) -> None:
    assert failures == [WriteFailure(
        "o", f"artifact 'm.bin' of run {RUN_ID}",
        f"Invalid source for artifact 'm.bin' of run {RUN_ID}: {str(source)!r} cannot be read (Input/output error).",
    )]


@pytest.mark.parametrize("ways", [None, (READ_WRITE,)], ids=["the platform's ways", "reads and writes"])
def test_the_daemon_s_copy_of_a_source_with_a_bad_block_fails_its_artifact_alone(
    tmp_path: Path, bad_source: Path, ways: tuple[str, ...] | None
) -> None:
    writer, run_folder = writer_with_run(tmp_path / "mlruns")
    copy = ArtifactCopy(str(tmp_path / "mlruns"), RUN_ID, "m.bin", str(bad_source))
    copy.ways = ways or copy_ways()
    _drop_cache(bad_source)
    assert copy.run(threading.Event())
    with writer:
        batch = metrics("loss", (1, 0.5, 0))
        batch.artifacts.append(ArtifactWrite("o", RUN_ID, "m.bin", source_path=str(bad_source), copy=copy))
        # This used to raise StoreUnavailable "The store at ... cannot be written (Input/output error)"
        # for reads and writes (the probe read a good byte where the chunk began).
        _refused_alone(writer.write(batch), bad_source)
    assert (run_folder / "metrics" / "loss").read_text() == "1 0.5 0\n"


def test_a_store_writer_copying_a_source_with_a_bad_block_fails_its_artifact_alone(tmp_path: Path, bad_source: Path) -> None:
    writer, run_folder = writer_with_run(tmp_path / "mlruns")
    _drop_cache(bad_source)
    with writer:
        batch = metrics("loss", (1, 0.5, 0))
        batch.artifacts.append(ArtifactWrite("o", RUN_ID, "m.bin", source_path=str(bad_source)))
        # This used to raise StoreUnavailable: the source's first byte read, so its error was the disk's.
        _refused_alone(writer.write(batch), bad_source)
    assert (run_folder / "metrics" / "loss").read_text() == "1 0.5 0\n"
    assert not (run_folder / "artifacts" / "m.bin").exists()
    assert not [p for p in (tmp_path / "mlruns").iterdir() if p.name.startswith(".trackd-")]  # no staging copy left
