"""Confinement: the writer never writes outside its store root, whatever was planted inside it.

Keys, run ids and artifact paths are validated (no '..', nothing absolute), so the paths the writer
builds are lexically inside the root. What validation cannot see is the disk: a store shared with
a group, or restored from an archive, can hold a symbolic link where a run's ``metrics/`` folder
or a metric file should be, or a FIFO or device file under a key's name. Following those would
write into another file of the user's (``~/.bashrc`` through ``metrics -> ~``), block the writer
thread for ever (a FIFO) or feed a device. So a folder is used only if it resolves to exactly the
path its name says (no symbolic link anywhere below the root), and a file only if it is a regular
file, opened with O_NOFOLLOW.

These checks cost a realpath() (one lstat per path component): the writer runs them when it first
uses a run or opens a metric file's folder, and once per write for the folder of its new metric
files and for each run folder it opens to write params or tags into (``_key_files``), never per
item. A metric folder's descriptor is kept (open_folder) and its files are opened (and new ones
linked) by name in it, as are a run's params/ and tags/ folders' while a write holds them, so a
folder checked once cannot be swapped for a link afterwards; a folder opened by path after its check
must be the folder checked (check_opened_folder), so neither can one above it in between.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import StoreError
from ._format import FILE_MODE, not_regular_message, open_nonblocking, write_temp_file

# O_NONBLOCK: opening a FIFO for writing without a reader never blocks the writer thread; the
# fstat check then refuses it. For a regular file it changes nothing but a lease's wait, which
# open_nonblocking waits out.
# O_NOCTTY: a terminal device planted at a key's name never becomes the daemon's controlling
# terminal in the moment between its open and the fstat that refuses it.
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_TRUNCATE_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# O_NOFOLLOW on a symbolic link fails with ELOOP (Linux) or EMLINK (FreeBSD, macOS).
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})
# link() where a filesystem has no hard links (some FUSE, SMB and FAT mounts).
_NO_HARD_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def is_within(path: str, folder: str) -> bool:
    """Whether absolute, normalized ``path`` is ``folder`` or lexically below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def deepest_existing(path: str) -> str:
    """``path``'s nearest part that exists (itself, or a link, if it does): what a ``makedirs`` of
    ``path`` would make its folders under."""
    existing = path
    while not os.path.lexists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    return existing


def check_confined(path: str, root: str, real_root: str) -> None:
    """Refuse ``path`` (a folder lexically below ``root``) unless it resolves to where its name says.

    ``real_root`` is ``os.path.realpath(root)`` as found when the store was opened (a root that is
    itself a link, ``~/mlruns -> /data/mlruns``, is the user's choice and fine). Folders that do
    not exist yet are judged by their deepest existing ancestor: what the writer creates below a
    real folder is real. Raises StoreError naming the path and where it leads.
    """
    existing = deepest_existing(path)
    real = os.path.realpath(existing)
    base = root if is_within(existing, root) else real_root
    if is_within(real, real_root) and os.path.relpath(real, real_root) == os.path.relpath(existing, base):
        return
    where = "outside the store" if not is_within(real, real_root) else "elsewhere in the store"
    raise StoreError(
        f"Refusing to write into {existing!r}: it resolves to {real!r}, {where} at {real_root!r}; "
        "trackd never follows a symbolic link planted inside a store."
    )


def check_regular_or_missing(path: str, folder_fd: int | None = None) -> None:
    """Refuse ``path`` if it exists as a symbolic link, FIFO, device file or socket.

    With ``folder_fd`` (a descriptor of the folder of ``path``), the file's name is looked up in
    that folder. A folder passes: opening it fails with IsADirectoryError, which the writer
    reports as a key that clashes with a folder of other keys ('a' and 'a/b').
    """
    try:
        if folder_fd is None:
            info = os.lstat(path)
        else:
            info = os.stat(path.rpartition("/")[2], dir_fd=folder_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        raise StoreError(not_regular_message(path, info.st_mode))


def open_regular_for_append(
    path: str, mode: int, folder_fd: int | None = None, *, checked: bool = False, create: bool = True
) -> tuple[int, int]:
    """An O_APPEND descriptor of regular file ``path``, created if missing (unless ``create`` is
    false: then FileNotFoundError), and its size; never through a link.

    With ``folder_fd`` (see open_folder), the file is opened by name in that folder (openat): the
    kernel walks no path, and the folder is the one checked when its descriptor was opened.
    ``checked``: the caller has just found ``path`` regular or missing with an lstat of its own, so
    it is not looked up again before the open (past the open-file cap every write reopens most of
    its files); what was planted since is refused by O_NOFOLLOW and the fstat after the open, as it
    is in the moment between any check and open.
    """
    if not checked:
        check_regular_or_missing(path, folder_fd)
    flags = _APPEND_FLAGS if create else _APPEND_FLAGS & ~os.O_CREAT
    try:
        if folder_fd is None:
            fd = open_nonblocking(path, flags, mode)
        else:
            fd = open_nonblocking(path.rpartition("/")[2], flags, mode, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS:
            raise StoreError(not_regular_message(path, stat.S_IFLNK)) from None
        raise
    # The check above and the open are two steps; what was opened is what counts.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise StoreError(not_regular_message(path, info.st_mode))
    return fd, info.st_size


def create_regular_with(path: str, data: bytes, temp_dir: str, folder_fd: int | None = None) -> tuple[int, int] | None:
    """Create regular file ``path`` holding ``data`` from the moment it appears, and return
    open_regular_for_append()'s (descriptor, size) of it; None if ``path`` exists already or the
    filesystem has no hard links.

    MLflow's get_run and search_runs read every metric file of a run and raise on an empty one
    ("Metric 'loss' is malformed. No data found."), so a file opened with O_CREAT and written after
    fails every MLflow reader that lists it in between. The lines go to a temp file in ``temp_dir``
    first (the run folder: not metrics/, where MLflow takes every file for a key), which is then
    linked into place whole; link() never replaces a file someone made meanwhile (EEXIST).
    """
    try:
        temp = write_temp_file(data, temp_dir)
    except OSError as exc:
        if exc.filename is None:  # os.write() names no file, and the message reaches the client
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise
    if not link_temp_file(temp, path, folder_fd):
        return None
    # Held by its own name, not the temp's: what the daemon holds open is what a user sees.
    return open_regular_for_append(path, FILE_MODE, folder_fd, checked=True, create=False)


def open_or_create_regular(path: str, first: bytes, temp_dir: str | None, folder_fd: int | None, checked: bool) -> tuple[int, int, bool]:
    """(descriptor, size, created) of ``path``: opened if it exists, else created holding ``first``
    when a ``temp_dir`` is given, else created empty (O_CREAT) for the append to fill."""
    if temp_dir is not None and first:
        try:
            return (*open_regular_for_append(path, FILE_MODE, folder_fd, checked=checked, create=False), False)
        except FileNotFoundError:
            pass
        created = create_regular_with(path, first, temp_dir, folder_fd)
        if created is not None:
            return (*created, True)
        checked = False  # made by someone else meanwhile (or no hard links here): look at it, then append
    return (*open_regular_for_append(path, FILE_MODE, folder_fd, checked=checked), False)


def link_temp_file(temp: str, path: str, folder_fd: int | None = None, *, remove: bool = True) -> bool:
    """Link the complete temp file ``temp`` to ``path`` and remove ``temp``; whether it was linked
    (False: ``path`` exists already, or the filesystem has no hard links).

    link() never replaces a file someone made meanwhile (EEXIST), where os.replace would.
    ``remove``: false when the caller removes ``temp`` itself (it may link it again first).
    """
    try:
        if folder_fd is None:
            os.link(temp, path, follow_symlinks=False)
        else:
            os.link(temp, path.rpartition("/")[2], dst_dir_fd=folder_fd, follow_symlinks=False)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno in _NO_HARD_LINK_ERRNOS:
            return False
        raise
    finally:
        if remove:
            os.remove(temp)
    return True


def open_folder(path: str, folder_fd: int | None = None) -> int:
    """A descriptor of folder ``path`` (not a link), for opening files in it by name.

    The caller checked ``path`` with check_confined() first; what is held is that folder, so a link
    put in its place later is never followed through this descriptor. With ``folder_fd`` (a
    descriptor of its parent), ``path`` is opened by name in that folder.
    """
    if folder_fd is None:
        return os.open(path, _FOLDER_FLAGS)
    return os.open(path.rpartition("/")[2], _FOLDER_FLAGS, dir_fd=folder_fd)


def check_opened_folder(fd: int, path: str, root: str, real_root: str) -> None:
    """Refuse ``fd``, folder ``path`` opened after check_confined() found it in place, unless it is
    that folder: a folder above it swapped for a link between the check and the open has it
    elsewhere (O_NOFOLLOW guards only the last component). StoreError as check_confined's.

    Linux tells where a descriptor is (/proc/self/fd), which settles it when that is the name
    expected. Otherwise (no /proc, or a name that differs in its text only: a case-insensitive
    filesystem names "mlruns" what the user typed as "MLRuns"; a bind mount unmounted since
    names it from that mount's root) ``path`` is confined again and must still be the folder
    held (a folder has one name: no hard links to folders).
    """
    below = path[len(root):]
    if path.startswith(root) and below.startswith(os.sep):
        expected = real_root + below  # as the join below, without relpath()'s 5 us (once per folder opened)
    else:
        expected = os.path.join(real_root, os.path.relpath(path, root))
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = "another folder"
    else:
        if real == expected:
            return
    check_confined(path, root, real_root)
    held, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
    if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
        return
    raise StoreError(
        f"Refusing to write into {path!r}: the folder opened is {real!r}, not {expected!r} (a folder "
        "above it was replaced meanwhile); trackd never follows a symbolic link planted inside a store."
    )


def open_checked_folder(folder: str, roots: tuple[str, str], *, create: bool) -> int:
    """A descriptor of metric folder ``folder`` (made if missing when ``create``), opened by path;
    ``roots``: the store's root and its realpath.

    The writer confined ``folder`` before (when it located the file); a folder above it
    swapped for a link between that check and this open is refused here, as the params/tags
    path refuses a run folder (check_opened_folder): the folder opened is the one whose files
    are written, by name in it. One check per folder opened, not per file.
    """
    try:
        fd = open_folder(folder)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(folder, exist_ok=True)  # a nested key's ("group/loss"), or a metrics/ a user removed
        fd = open_folder(folder)
    except OSError as exc:
        if is_symlink_error(exc) or exc.errno == errno.ENOTDIR:
            # (Linux says ENOTDIR of a link opened with O_DIRECTORY.) A link planted since the
            # writer's check is refused in check_confined's words; a file there is a clash of keys.
            check_confined(folder, *roots)
        raise
    try:
        check_opened_folder(fd, folder, *roots)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_symlink_error(exc: OSError) -> bool:
    """Whether an open with O_NOFOLLOW failed because it met a symbolic link."""
    return exc.errno in _SYMLINK_ERRNOS


def not_regular(path: str, mode: int) -> StoreError:
    """The error refusing to write ``path``, found of file type ``mode`` (a link, a FIFO...)."""
    return StoreError(not_regular_message(path, mode))


def open_regular_for_truncate(path: str) -> int | None:
    """A write descriptor of regular file ``path``; None if it is missing or not a regular file."""
    try:
        fd = open_nonblocking(path, _TRUNCATE_FLAGS)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS or exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENXIO):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
