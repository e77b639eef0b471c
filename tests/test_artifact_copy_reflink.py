"""The daemon's copy of a large artifact into the store is a reflink where the filesystem can.

The client's copy at the call is a reflink on XFS and btrfs (FICLONE), and the daemon then copied
it into the store with sendfile: a full second copy of a checkpoint, its size in room and in
time. It now tries copy_file_range first, which shares the extents on the same XFS or btrfs.

Real processes: a real daemon, a real XFS (reflink=1) loop image where mkfs.xfs and loop mounts
are available; MLflow reads the store back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess
from test_artifact_snapshots import MIB, _artifact, _media_left, _used_bytes, _xfs_with_reflinks

from trackd import Client, ClientConfig

SIZE = 64 * MIB


def test_on_xfs_the_daemon_copy_into_the_store_takes_no_room(daemon: DaemonProcess, tmp_path: Path) -> None:
    # This used to grow the filesystem by the file's size (sendfile copies the data).
    with _xfs_with_reflinks(tmp_path / "xfs") as xfs:
        source, store = xfs / "last.ckpt", xfs / "mlruns"
        source.write_bytes(b"1" * SIZE)
        config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, spool_dir=xfs / "spool")
        with Client(store, config=config) as client:
            run_id = client.create_run().info.run_id
            client.flush()
            before = _used_bytes(xfs)
            client.log_artifact(run_id, source)
            client.flush()
            grown = _used_bytes(xfs) - before
        assert _artifact(store, run_id, "last.ckpt") == b"1" * SIZE
        assert _media_left(xfs / "spool") == []  # the client's copy went: only the store's is left
        assert grown < 4 * MIB, f"the store's copy of a {SIZE} byte file took {grown} bytes: not a reflink"
        with open(source, "r+b") as rewrite:  # shared extents, but a file of its own
            rewrite.write(b"2" * SIZE)
        assert _artifact(store, run_id, "last.ckpt") == b"1" * SIZE


@pytest.mark.parametrize("size", [9 * MIB + 1, SIZE + 12345])
def test_every_size_is_copied_whole_on_the_default_filesystem(daemon: DaemonProcess, store: Path, tmp_path: Path, size: int) -> None:
    # Over 8 MiB, so copied by the daemon: copy_file_range copies in the kernel on ext4 or tmpfs
    # too, and a file that ends inside a chunk (COPY_CHUNK, 64 MiB) lands as it was.
    source = tmp_path / "model.bin"
    source.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, spool_dir=tmp_path / "spool", artifact_snapshot=False)
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.log_artifact(run_id, source)
        client.flush()
    assert _artifact(store, run_id, "model.bin") == source.read_bytes()
