"""A stopping daemon removes its own socket file, not one made at the path with the same inode number.

Shutdown removes the socket file only if the path still holds the one the daemon bound. That was
told by (device, inode): sound while the daemon holds the file (listening, or any connection open),
not once it has closed them all. A socket file removed then frees its inode, ext4 gives the number
to the next file made (here, at the same path), and shutdown removed that file.

The moment is made for real: the daemon runs under strace, which delays each look at its lock file
(the one shutdown makes just before it looks at the socket file) by seconds, and its socket's
folder is on an ext4 filesystem of its own (a loop mount: needs root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TracedDaemon, wait_for

pytestmark = pytest.mark.timeout(120)

# Each stat of the lock file by path or descriptor waits this long (microseconds), the watch's too.
DELAY_US = 3_000_000


@pytest.fixture
def ext4_folder() -> Iterator[Path]:
    """A private folder on a fresh ext4 filesystem (a sparse image, loop-mounted), short enough for a socket path."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    top = Path(tempfile.mkdtemp(prefix="ti-"))
    image, mount = top / "fs.img", top / "m"
    try:
        with open(image, "wb") as file:
            file.truncate(16 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
        mount.mkdir()
        mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a loop device here (needs root): {mounted.stderr.strip()}")
        try:
            folder = mount / "d"
            folder.mkdir(mode=0o700)
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=True, capture_output=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_shutdown_leaves_a_file_made_at_its_socket_path_with_the_removed_socket_inode_number(
    ext4_folder: Path, tmp_path: Path,
) -> None:
    socket_path = ext4_folder / "d.sock"
    lock = socket_path.with_name(socket_path.name + ".lock")
    daemon = TracedDaemon(
        socket_path, tmp_path / "trace", "-P", str(lock), "-e", "trace=newfstatat,statx",
        "-e", f"inject=newfstatat,statx:delay_enter={DELAY_US}",
    ).start(timeout=60)
    assert daemon.process is not None
    pid = int(daemon.paths.pid.read_text())
    try:
        bound = os.lstat(socket_path).st_ino
        os.kill(pid, signal.SIGTERM)
        # Logged after the listener closed, with no client connected, and seconds before the look at
        # the socket file: nothing holds the socket file's inode from here.
        wait_for(lambda: "Shutdown: closing 0 client connections" in daemon.log(), timeout=60, message="shutdown's last phase")
        socket_path.unlink()
        deadline = time.monotonic() + DELAY_US / 1e6
        attempt = 0
        while True:
            socket_path.write_text("a user's file\n")
            if os.lstat(socket_path).st_ino == bound:
                break
            # Another free number came first, or the socket's is not free yet (a connection the
            # daemon is still closing holds it): keep that one taken, and make the file again.
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"ext4 did not give inode {bound} to a new file in time: nothing was tested; the "
                    f"daemon's descriptors then: {_descriptors(pid)}\n{daemon.log()}"
                )
            socket_path.rename(socket_path.with_name(f"aside-{attempt}"))
            attempt += 1
            time.sleep(0.01)
        assert daemon.process.wait(60) == 0, daemon.log()
        # This used to be gone: its (device, inode) matched the socket file the daemon had bound.
        assert socket_path.read_text() == "a user's file\n", daemon.log()
        assert not daemon.paths.pid.exists(), "the daemon's own pid file is its to remove"
    finally:
        # A failed check must not leave the traced daemon running into the next test (its pipe and
        # Popen were reported there as unraisable ResourceWarnings, failing that test too).
        # The daemon itself, not strace (killed, strace would leave it running, detached).
        if daemon.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            daemon.process.wait(60)
        if daemon.process.stderr is not None:
            daemon.process.stderr.close()


def _descriptors(pid: int) -> list[str]:
    """What process ``pid``'s open descriptors lead to (sockets by inode), for a failure's message."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        return sorted(os.readlink(folder / name) for name in os.listdir(folder))
    except OSError as exc:
        return [f"unreadable: {exc}"]
