"""A process's media folder, made again by many threads at once after something removed it.

Several threads of one process log large files at once (a DataLoader's workers are processes,
but a training loop's checkpoint thread and its figure callback are threads). When the media
folder was removed under them (a delivery that found it orphaned before the lock was taken, a
user's `rm -rf`, close() removing it empty), each thread that found it gone made it again and
closed the descriptor it held: two at once closed the same one twice (the second perhaps a
descriptor another thread had opened meanwhile, a socket) and leaked one of the new ones.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from trackd.client._media_folders import MediaFolders, media_folder

THREADS = 8
ROUNDS = 300


def _open_on(path: Path) -> int:
    """How many of this process's descriptors are open on ``path`` (removed or not)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.removesuffix(" (deleted)") == str(path):
            count += 1
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd")
def test_threads_remaking_a_removed_media_folder_leak_no_descriptor_and_close_none_twice(tmp_path: Path) -> None:
    # This used to leave several descriptors open on the media folder (and raised EBADF at times).
    spool = tmp_path / "spool"
    media = MediaFolders(spool, "0123456789abcdef")
    path = media_folder(spool, "0123456789abcdef")
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    def log_large_files() -> None:
        start.wait()
        for _ in range(ROUNDS):
            try:
                folder = media.new_folder(in_temp_if_refused=False)
            except FileNotFoundError:
                continue  # removed between its making and the folder's: the call sends by path
            except OSError as exc:
                errors.append(exc)
                continue
            shutil.rmtree(folder, ignore_errors=True)

    threads = [threading.Thread(target=log_large_files) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        shutil.rmtree(path, ignore_errors=True)  # removed under the threads, again and again
    for thread in threads:
        thread.join()
    media.new_folder(in_temp_if_refused=False)
    assert errors == []
    assert _open_on(path) == 1  # the one that holds its lock
    media.abandon()
    assert _open_on(path) == 0
