"""Param and tag files, written through descriptors of their folders that one write holds.

A param or tag is a file named by its key in the run's ``params/`` or ``tags/`` (MLflow's
FileStore: raw UTF-8, no trailing newline), replaced whole: the value goes to a temp file in the run
folder (not in params/ or tags/, where MLflow takes every file for a key) and is renamed over the
key's file, so that a reader never sees half a value.

Found by path, each item cost a realpath() of its folder to confine it (one lstat per component
of the path), a makedirs, an lstat of its file, and its temp file and rename, each a walk of the
whole path: about 13 stat calls and a failed mkdir per item (10,000 params and 3,000 tags took
longer to write than MLflow's own synchronous log_params). Here a write confines each run folder
once (check_confined), opens it, and opens params/ and tags/ in it (a nested key's folders one
at a time below them) with O_NOFOLLOW: a folder planted as a link is refused, and what was
checked is what is written into until the write ends. An item then costs an lstat of its file,
its temp file's open, write and close, and one rename, all by name in those folders.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _layout as layout
from ._confinement import check_confined, is_symlink_error, not_regular, open_folder
from ._format import FILE_MODE, decode_text

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
# O_NONBLOCK, O_NOCTTY: a FIFO or terminal swapped in after the lstat never blocks or adopts the daemon.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_READ_CHUNK = 64 * 1024


class KeyFolders:
    """The descriptors of the run folders, and of the params/ and tags/ folders in them, that one
    write of a store used; ``close()`` at the end of the write. Not thread-safe."""

    def __init__(self, root: str, real_root: str) -> None:
        self._root = root
        self._real_root = real_root
        self._fds: dict[str, int] = {}  # folder -> descriptor

    def folders(self, run_folder: str, path: str, *, create: bool) -> tuple[int, int] | None:
        """(run folder, folder of ``path``) descriptors, for a key file ``path`` below ``run_folder``.

        A missing folder is made when ``create``; otherwise the answer is None, as it is for a
        folder of the key's path that is a file. StoreError for a folder that is a link.
        """
        run_fd = self._fds.get(run_folder)
        if run_fd is None:
            # The run folder and every folder above it, by path, once per write; the folders
            # below it are opened by name in it, where O_NOFOLLOW refuses a link.
            check_confined(run_folder, self._root, self._real_root)
            run_fd = self._fds[run_folder] = open_folder(run_folder)
        folder = path.rpartition("/")[0]
        fd = self._fds.get(folder)
        if fd is not None:
            return run_fd, fd
        fd = run_fd
        end = len(run_folder)
        while end < len(folder):
            end = folder.find("/", end + 1)
            if end < 0:
                end = len(folder)
            sub = folder[:end]
            child = self._fds.get(sub)
            if child is None:
                child = self._open_child(fd, sub, create)
                if child is None:
                    return None
                self._fds[sub] = child
            fd = child
        return run_fd, fd

    def _open_child(self, parent_fd: int, folder: str, create: bool) -> int | None:
        try:
            return open_folder(folder, parent_fd)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            if is_symlink_error(exc) or exc.errno == errno.ENOTDIR:
                # Linux refuses a link with ENOTDIR when O_DIRECTORY is given too: in check_confined's
                # words, where the link leads. (Removed since: refused all the same, below.)
                check_confined(folder, self._root, self._real_root)
            if exc.errno == errno.ENOTDIR:
                if not create:
                    return None
                # What os.makedirs said of it, as the writer did before: a file where a folder
                # of keys should be is a clash of keys ('a' and 'a/b').
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), folder) from None
            raise OSError(exc.errno, exc.strerror, folder) from None
        try:
            os.mkdir(folder.rpartition("/")[2], dir_fd=parent_fd)
        except FileExistsError:
            pass  # made meanwhile (another daemon on the store)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, folder) from None
        return self._open_child(parent_fd, folder, False)

    def close(self) -> None:
        """Close every descriptor; idempotent."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


def look_up(folder_fd: int, path: str) -> os.stat_result | None:
    """lstat of key file ``path`` in its folder ``folder_fd``: None if missing; StoreError if it is a
    link, FIFO, device file or socket (a folder passes: the caller reports it as a clash of keys)."""
    try:
        info = os.stat(path.rpartition("/")[2], dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        raise not_regular(path, info.st_mode)
    return info


def read_key_file(folder_fd: int, path: str, info: os.stat_result) -> str:
    """The value in key file ``path`` (``info``: its look_up()), byte-exact."""
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    try:
        fd = os.open(path.rpartition("/")[2], _READ_FLAGS, dir_fd=folder_fd)
    except OSError as exc:
        if is_symlink_error(exc):
            raise not_regular(path, stat.S_IFLNK) from None
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        chunks = []
        while chunk := os.read(fd, _READ_CHUNK):
            chunks.append(chunk)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    return decode_text(b"".join(chunks), path)


def replace_key_file(run_fd: int, folder_fd: int, run_folder: str, path: str, value: str) -> None:
    """Replace key file ``path`` with ``value``: a temp file in the run folder, renamed over it.

    Errors name what the path-based write named: the temp file for its open and the rename (whose
    target may be a folder of keys), nothing for a write() (the caller names the item).
    """
    temp = layout.temp_file_path(run_folder)
    temp_name = temp.rpartition("/")[2]
    try:
        fd = os.open(temp_name, _TEMP_FLAGS, FILE_MODE, dir_fd=run_fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, temp) from None
    try:
        try:
            view = memoryview(value.encode("utf-8"))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(temp_name, path.rpartition("/")[2], src_dir_fd=run_fd, dst_dir_fd=folder_fd)
    except BaseException as exc:
        try:
            os.unlink(temp_name, dir_fd=run_fd)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is not None:
            raise OSError(exc.errno, exc.strerror, temp, None, path) from None
        raise


def remove_key_file(folder_fd: int, path: str) -> None:
    """Remove key file ``path`` from its folder ``folder_fd``."""
    try:
        os.unlink(path.rpartition("/")[2], dir_fd=folder_fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None

