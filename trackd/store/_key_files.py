"""Param and tag files, written through descriptors of their folders that one write holds, a few at a time.

A param or tag is a file named by its key in the run's ``params/`` or ``tags/`` (MLflow's
FileStore: raw UTF-8, no trailing newline), replaced whole: the value goes to a temp file in the run
folder (not in params/ or tags/, where MLflow takes every file for a key) and is renamed over the
key's file, so that a reader never sees half a value.

Found by path, each item cost a realpath() of its folder to confine it (one lstat per component
of the path), a makedirs, an lstat of its file, and its temp file and rename, each a walk of the
whole path: about 13 stat calls and a failed mkdir per item (10,000 params and 3,000 tags took
longer to write than MLflow's own synchronous log_params). Here a write confines a run folder
once (check_confined), opens it (and checks that what it opened is that folder), and opens
params/ and tags/ in it with O_NOFOLLOW: a folder planted as a link is refused, and what was
checked is what is written into. An item then costs an lstat of its file, its temp file's open,
write and close, and one rename, all by name in those folders.

Those descriptors are few and bounded: the most recently used run folders, params/ and tags/ are
held (``max_held``, a share of the metric-file cache's --max-open-files budget) and the others
closed, and a nested key's folders (g7/ of "g7/lr") are opened for their item and closed after
it. Holding every folder a write used until it ended made a write of 1,500 nested keys run out of
descriptors (EMFILE), which counts as a store outage: the same write was refused on every retry.
Out of descriptors all the same (connections, artifact copies), an item closes what is held, has
the metric-file cache give back half of its own, and is tried once more.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from . import _layout as layout
from ._confinement import check_confined, check_opened_folder, is_symlink_error, not_regular, open_folder
from ._format import FILE_MODE, decode_text, open_nonblocking
from ._run_handles import removed_run
from ._write_rules import item_name

_T = TypeVar("_T")
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
# O_NONBLOCK, O_NOCTTY: a FIFO or terminal swapped in after the lstat never blocks or adopts the daemon.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_READ_CHUNK = 64 * 1024
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class KeyFolders:
    """Param and tag files of one store's runs, written by name in descriptors of their folders.

    Holds at most ``max_held`` descriptors (run folders, their params/ and tags/), the least
    recently used closed first; ``close()`` at the end of each write. ``give_back``: called with the
    error when the process is out of descriptors (MetricFileCache.give_back). Not thread-safe.
    """

    def __init__(self, root: str, real_root: str, max_held: int, give_back: Callable[[OSError], object]) -> None:
        self._root = root
        self._real_root = real_root
        # Fewer than 2 (a run folder and its params/ at once) holds none: each item opens its own.
        self._max_held = max_held if max_held >= 2 else 0
        self._give_back = give_back
        self._held: OrderedDict[str, int] = OrderedDict()  # folder -> descriptor

    def write_new(self, run_folder: str, path: str, value: str) -> str | None:
        """Write key file ``path`` (below ``run_folder``) holding ``value`` unless it exists; the value
        it holds if it does (a param is never changed: the caller compares)."""
        return self._with_folders(run_folder, path, True, _write_new, value)

    def replace(self, run_folder: str, path: str, value: str) -> None:
        """Write key file ``path`` holding ``value``, replacing it whole if it exists (a tag)."""
        self._with_folders(run_folder, path, True, _replace, value)

    def remove(self, run_folder: str, path: str) -> bool:
        """Remove key file ``path``; whether there was one (a folder of keys is none)."""
        return self._with_folders(run_folder, path, False, _remove, "")

    def _with_folders(
        self, run_folder: str, path: str, create: bool, action: Callable[[tuple[int, int] | None, str, str, str], _T], value: str
    ) -> _T:
        """``action((run folder, folder of path) descriptors or None, run_folder, path, value)``,
        tried once more after giving descriptors back if the process has none left."""
        for attempt in (1, 2):
            transient: list[int] = []  # opened for this item only
            try:
                return action(self._folders(run_folder, path, create, transient), run_folder, path, value)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    removed = removed_run(_item_name(run_folder, path), run_folder, self._root)
                    if removed is not None:
                        raise removed from None
                if exc.errno not in _OUT_OF_DESCRIPTORS or attempt == 2:
                    raise
                # Each action is safe to repeat: its last step (the rename, the unlink) cannot fail so.
                self.close()
                self._give_back(exc)
            finally:
                for fd in transient:
                    os.close(fd)
        raise AssertionError("unreachable")  # (the second attempt returns or raises)

    def _folders(self, run_folder: str, path: str, create: bool, transient: list[int]) -> tuple[int, int] | None:
        """(run folder, folder of ``path``) descriptors, for a key file ``path`` below ``run_folder``.

        A missing folder is made when ``create``; otherwise the answer is None, as it is for a
        folder of the key's path that is a file. StoreError for a folder that is a link.
        """
        run_fd = self._held.get(run_folder)
        if run_fd is None:
            run_fd = self._hold(run_folder, self._open_run(run_folder), transient)
        else:
            self._held.move_to_end(run_folder)
        folder = path.rpartition("/")[0]
        end = folder.find("/", len(run_folder) + 1)
        top = folder if end < 0 else folder[:end]  # params/ or tags/
        fd = self._held.get(top)
        if fd is None:
            opened = self._open_child(run_fd, top, create)
            if opened is None:
                return None
            fd = self._hold(top, opened, transient)
        else:
            self._held.move_to_end(top)
        nested = False
        while end >= 0:
            # A nested key's folders, one at a time, each closed once the next is open.
            end = folder.find("/", end + 1)
            child = self._open_child(fd, folder if end < 0 else folder[:end], create)
            if nested:
                os.close(transient.pop())
            if child is None:
                return None
            transient.append(child)
            fd, nested = child, True
        return run_fd, fd

    def _hold(self, folder: str, fd: int, transient: list[int]) -> int:
        """Keep ``fd`` of ``folder`` for the next items (or for this one only, holding none)."""
        if not self._max_held:
            transient.append(fd)
            return fd
        self._held[folder] = fd
        while len(self._held) > self._max_held:
            # Never the run folder or params/ (tags/) in use now: the two most recent.
            os.close(self._held.popitem(last=False)[1])
        return fd

    def _open_run(self, run_folder: str) -> int:
        # The run folder and every folder above it, by path; the folders below it are opened by
        # name in it, where O_NOFOLLOW refuses a link.
        check_confined(run_folder, self._root, self._real_root)
        fd = open_folder(run_folder)
        try:
            # A folder above it swapped for a link between the check and the open: refused.
            check_opened_folder(fd, run_folder, self._root, self._real_root)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child(self, parent_fd: int, folder: str, create: bool) -> int | None:
        try:
            return open_folder(folder, parent_fd)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            refused = self._refusal(folder, exc)
            if not create and isinstance(refused, FileExistsError):
                return None  # a file where the folder would be: no key file below it
            raise refused from None
        try:
            os.mkdir(folder.rpartition("/")[2], dir_fd=parent_fd)
        except FileExistsError:
            pass  # made meanwhile (another daemon on the store, or MLflow)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, folder) from None
        try:
            return open_folder(folder, parent_fd)
        except OSError as exc:
            # Made meanwhile as something else (a file: a clash of keys; a link: refused), or
            # removed again: this item fails, as any item meeting that; the write goes on. (It
            # was an AssertionError, which failed every batch the daemon had pending.)
            raise self._refusal(folder, exc) from None

    def _refusal(self, folder: str, exc: OSError) -> Exception:
        """The error for ``folder`` that could not be opened as a folder."""
        if is_symlink_error(exc) or exc.errno == errno.ENOTDIR:
            # Linux refuses a link with ENOTDIR when O_DIRECTORY is given too: in check_confined's
            # words, where the link leads. (Removed since: refused all the same, below.)
            check_confined(folder, self._root, self._real_root)
        if exc.errno == errno.ENOTDIR:
            # What os.makedirs said of it, as the writer did before: a file where a folder
            # of keys should be is a clash of keys ('a' and 'a/b').
            return FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), folder)
        return OSError(exc.errno, exc.strerror, folder)

    def close(self) -> None:
        """Close every held descriptor; idempotent."""
        held, self._held = self._held, OrderedDict()
        for fd in held.values():
            os.close(fd)


def _item_name(run_folder: str, path: str) -> str:
    """How a failure names the param or tag whose file is ``path`` (item_name), for an error
    raised here: "param 'lr' of run <id>"."""
    folder, _, key = path[len(run_folder) + 1:].partition("/")
    return item_name("param" if folder == layout.PARAMS_FOLDER_NAME else "tag", key, os.path.basename(run_folder))


def _write_new(folders: tuple[int, int] | None, run_folder: str, path: str, value: str) -> str | None:
    run_fd, folder_fd = _made(folders, path)
    info = look_up(folder_fd, path)
    if info is not None:
        return read_key_file(folder_fd, path, info)
    replace_key_file(run_fd, folder_fd, run_folder, path, value)
    return None


def _replace(folders: tuple[int, int] | None, run_folder: str, path: str, value: str) -> None:
    run_fd, folder_fd = _made(folders, path)
    look_up(folder_fd, path)  # a link or FIFO under the key's name is refused, not replaced
    replace_key_file(run_fd, folder_fd, run_folder, path, value)


def _made(folders: tuple[int, int] | None, path: str) -> tuple[int, int]:
    """The folders of ``path``, found with ``create``: never None then (KeyFolders._open_child)."""
    if folders is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return folders


def _remove(folders: tuple[int, int] | None, run_folder: str, path: str, value: str) -> bool:
    if folders is None:
        return False
    info = look_up(folders[1], path)
    if info is None or not stat.S_ISREG(info.st_mode):
        return False
    remove_key_file(folders[1], path)
    return True


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
        fd = open_nonblocking(path.rpartition("/")[2], _READ_FLAGS, dir_fd=folder_fd)
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

