"""Snapshots: a large artifact file copied at the call, so that the caller may change it at once.

MLflow's ``log_artifact`` copies the file before it returns (``shutil.copy2``), and the scripts
ported from it rely on that: a model saved into a ``TemporaryDirectory``, logged, and deleted with
the folder; ``last.ckpt`` rewritten in place each epoch. A file over MAX_INLINE_ARTIFACT_SIZE
travels as a path, and the daemon copied it after the call, from a file by then gone (the model:
only its config.json was stored) or changed (4 of 5 checkpoints refused at flush). So such a file
is first copied here into the process's media folder (``_media_folders``), and its record names
that copy, which nobody else writes: wandb's ``Artifact.add_file(policy="mutable")``, its default,
stages a copy at the call the same way. ``TRACKD_ARTIFACT_SNAPSHOT=0`` sends the file's own path
instead, for files the user keeps unchanged until ``flush()``.

The copy is made the cheapest way the platform has: a reflink (the FICLONE ioctl: btrfs, XFS;
no data is copied), else ``copy_file_range`` (inside the kernel; itself a reflink where the
filesystem can, a server-side copy on NFS 4.2), else ``sendfile``, else reads and writes. Never a
hard link: a file rewritten in place (``open(path, "wb")`` truncates the same inode) would change it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import MAX_INLINE_ARTIFACT_SIZE, MAX_NAME_LENGTH
from ._outbox import warn

if TYPE_CHECKING:
    from ._media_folders import MediaFolders

# linux/fs.h: FICLONE = _IOW(0x94, 9, int), "make the target share the source's extents".
FICLONE = 0x40049409
# Bytes per copy_file_range or sendfile call; the kernel copies at most ~2 GiB per call anyway.
KERNEL_CHUNK = 1024 * 1024 * 1024
# Bytes per read where the kernel cannot copy between the two files.
READ_CHUNK = 1024 * 1024
# The kernel cannot copy between these two files this way (another filesystem on an older kernel,
# a filesystem without the call, a /proc file): the next way is tried, from where this one stopped.
_NOT_THIS_WAY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP, errno.ETXTBSY, errno.EBADF})


class Snapshots:
    """The snapshots one logging call makes, in one folder of the media folder made at the first.

    A snapshot that cannot be made (a full disk or quota, a spool folder that is not private or
    writable) is not an error in the training loop: the file goes by its own path, as with
    TRACKD_ARTIFACT_SNAPSHOT=0, and one line says so, naming the file and why. The call's later
    files go by path too, without trying again. Later calls try again, silently: with a disk
    that stays full, a loop that logs a checkpoint each epoch printed one line per epoch; the
    process says how many in all when it closes (``MediaFolders.warn_snapshots_failed``).
    """

    def __init__(self, media: MediaFolders, store_root: str) -> None:
        self._media = media
        self._store_root = store_root
        self.folder: str | None = None
        # Snapshots made (their records may be buffered): the folder waits for the daemon's copy.
        self.taken = 0
        self._failed = False

    def take(self, source: Path, name: str) -> tuple[str, tuple[int, int], os.stat_result] | None:
        """Copy ``source`` (logged as artifact ``name``) now; return the copy's path and stamp, and
        the source's stat when opened (its mode is the artifact's). None: send ``source`` by path."""
        if self._failed:
            return None
        try:
            opened = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None  # by path, as before: the daemon says at flush() why it cannot read it either
        target_path = None
        try:
            info = os.fstat(opened)
            if not stat.S_ISREG(info.st_mode):
                return None  # swapped for a device or FIFO since it was sized: the daemon refuses it by path
            if self.folder is None:
                self.folder = self._media.new_folder(in_temp_if_refused=False)
            target_path = os.path.join(self.folder, str(self.taken))
            # The record carries the path as UTF-8 text, of at most MAX_NAME_LENGTH characters.
            if len(target_path) > MAX_NAME_LENGTH:
                raise OSError(errno.ENAMETOOLONG, f"its path would have {len(target_path)} characters, over {MAX_NAME_LENGTH}")
            if not target_path.isascii():
                try:
                    target_path.encode("utf-8")
                except UnicodeEncodeError:
                    raise OSError(errno.EILSEQ, "the media folder's path is not UTF-8") from None
            target = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                cloned = _clone(opened, target)
                if not cloned:  # a reflink takes no room: only a copy of the data is checked for it
                    self._check_room(info.st_size)
                copy_contents(opened, target, info.st_size, cloned=cloned)
                copied = os.fstat(target)
            finally:
                os.close(target)
        except OSError as exc:
            if target_path is not None:
                _unlink(target_path)
            self._failed = True
            if self._media.note_snapshot_failed():
                where = self.folder or "the media folder"
                why = exc.strerror or str(exc)
                warn(
                    f"Could not copy artifact {name!r} ({source}) into {where} at the call ({why}): it, and any other "
                    f"file over {MAX_INLINE_ARTIFACT_SIZE} bytes this call logs, is copied by the daemon from its own "
                    "path after the call, so keep it unchanged until flush() returns. Later calls whose copy fails "
                    "too say nothing more: how many files in all went by their own paths is said at close."
                )
            return None
        finally:
            os.close(opened)
        self.taken += 1
        return target_path, (copied.st_size, copied.st_mtime_ns), info

    def _check_room(self, size: int) -> None:
        """Refuse a snapshot its filesystem has no room for, before filling the disk with it.

        Where the store is on the same filesystem, the daemon's copy into it needs as much again
        while the snapshot waits: a snapshot that left less made the artifact fail there instead.
        """
        assert self.folder is not None
        try:
            disk = os.statvfs(self.folder)
        except OSError:
            return
        free = disk.f_bavail * disk.f_frsize
        needed = size * (2 if _same_filesystem(self.folder, self._store_root) else 1)
        if free < needed:
            copies = "and the daemon's copy into the store, on the same filesystem, " if needed > size else ""
            raise OSError(errno.ENOSPC, f"the copy {copies}needs {needed} bytes, and {free} are free")


def copy_contents(source: int, target: int, size: int, *, cloned: bool) -> None:
    """Copy the file open as ``source`` (``size`` bytes when opened) into the empty ``target``,
    or into ``target`` made a reflink of it already (``cloned``: ``_clone`` succeeded).

    The fast ways copy ``size`` bytes; what follows, up to the end of the file, is copied by reads:
    a file that grew since (a log still written) is copied to its end, as shutil.copy2 does, and
    a /proc file, whose size 0 is not its content, is copied whole.
    """
    copied = os.fstat(target).st_size if cloned else 0
    if copied < size and hasattr(os, "copy_file_range"):
        copied = _copy_file_range(source, target, copied, size)
    if copied < size and sys.platform.startswith("linux"):
        copied = _sendfile(source, target, copied, size)
    while data := os.pread(source, READ_CHUNK, copied):
        view = memoryview(data)
        while view:
            written = os.pwrite(target, view, copied)
            view, copied = view[written:], copied + written


def _clone(source: int, target: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        fcntl.ioctl(target, FICLONE, source)
    except OSError:
        return False  # not a filesystem that shares extents, or another filesystem: copy instead
    return True


def _copy_file_range(source: int, target: int, copied: int, size: int) -> int:
    while copied < size:
        try:
            count = os.copy_file_range(source, target, min(KERNEL_CHUNK, size - copied), copied, copied)
        except OSError as exc:
            if exc.errno not in _NOT_THIS_WAY:
                raise
            break
        if not count:
            break  # the end of the file (it shrank), or a file the call copies nothing of
        copied += count
    return copied


def _sendfile(source: int, target: int, copied: int, size: int) -> int:
    os.lseek(target, copied, os.SEEK_SET)  # sendfile writes at the target's position
    while copied < size:
        try:
            count = os.sendfile(target, source, copied, min(KERNEL_CHUNK, size - copied))
        except OSError as exc:
            if exc.errno not in _NOT_THIS_WAY:
                raise
            break
        if not count:
            break
        copied += count
    return copied


def _same_filesystem(folder: str, store_root: str) -> bool:
    """Whether ``store_root`` (or, before the store's first write, its nearest existing parent) is on ``folder``'s filesystem."""
    path = Path(store_root)
    while True:
        try:
            return os.stat(path).st_dev == os.stat(folder).st_dev
        except FileNotFoundError:
            if path.parent == path:
                return False
            path = path.parent
        except OSError:
            return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
