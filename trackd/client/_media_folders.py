"""Where trackd keeps a file the daemon copies by path until it has, and who removes it.

A figure over MAX_INLINE_ARTIFACT_SIZE travels as a path (``_media.saved_artifact``), so its file
must stay until the daemon has copied it; so do ``log_text`` and ``log_dict`` content over that
size, and the copy of a large file ``log_artifact(s)`` makes at the call (``_snapshot``). It is saved in a folder of its own inside the client's
media folder, ``<spool dir>/<client id>.media/``, beside the client's spool file, and removed by
whoever knows the copy is made:

- the process itself, once a flush barrier appended behind the record is answered
  (``MediaFolders.take_written``). A barrier that fails (the daemon given up: the record went
  to the spool, or waits to be resent) is followed by a new one at the next large figure;
- at exit, what is left waits for the spool: whoever delivers ``<client id>.spool`` (a later
  process's background delivery, or ``trackd sync``) removes ``<client id>.media/`` once the
  daemon answered the flush behind the whole file (``remove_delivered``);
- a media folder with no spool file beside it and no live process holding it (its records were
  written, or lost) is removed by the next delivery too (``remove_orphaned``). A live process
  holds a shared ``flock`` on its media folder, so it is never taken from under it.

The temporary directory was used before, and a spooled figure's folder there was never removed
(``trackd-artifact-*``, as large as the figure, after every outage); there it was also lost with
a reboot that cleared /tmp while the spool waited.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .._paths import SET_ASIDE_SUFFIX, ensure_private_directory
from ._outbox import Request
from ._spool import SPOOL_DIR_ENV, spool_file

MEDIA_SUFFIX = ".media"
# A new folder in a media folder: one per figure saved, or per logging call that copies large files.
FOLDER_PREFIX = "trackd-artifact-"
# Tries to make and lock a media folder that a delivery keeps removing as orphaned meanwhile.
MAX_LOCK_TRIES = 10


def media_folder(directory: Path, client_id: str) -> Path:
    """The media folder of client ``client_id`` whose spool folder is ``directory``."""
    return directory / f"{client_id}{MEDIA_SUFFIX}"


class MediaFolders:
    """One client's media folder, held (locked) once made, and its folders waiting for a barrier."""

    def __init__(self, spool_dir: Path, client_id: str) -> None:
        self._spool_dir = spool_dir
        self._path = media_folder(spool_dir, client_id)
        self._fd = -1
        # (folder, the barrier behind its records): removed once the barrier is answered.
        self._waiting: list[tuple[str, Request]] = []

    def new_folder(self, *, in_temp_if_refused: bool = True) -> str:
        """A new folder to save a figure in; in the temporary directory if the spool folder cannot
        hold it (not private, read-only), as before: then nothing removes it if it is spooled.

        Snapshots of large files (``_snapshot``) pass ``in_temp_if_refused=False`` and get the
        OSError: the file they copy is there to send by its own path, and /tmp is often a tmpfs,
        in memory, where a checkpoint's copy does not belong.
        """
        import tempfile  # here: a process that logs no figure does not load it

        try:
            self._hold()
            return tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=self._path)
        except OSError:
            if not in_temp_if_refused:
                raise
            return tempfile.mkdtemp(prefix=FOLDER_PREFIX)

    def _hold(self) -> None:
        """Make the media folder if need be, and lock it (shared) for as long as this process lives."""
        if self._fd >= 0 and _names(self._path, self._fd):
            return
        ensure_private_directory(self._spool_dir, variable=SPOOL_DIR_ENV)
        for _ in range(MAX_LOCK_TRIES):
            with contextlib.suppress(FileExistsError):
                os.mkdir(self._path, 0o700)
            fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _names(self._path, fd):
                if self._fd >= 0:
                    os.close(self._fd)
                self._fd = fd
                return
            os.close(fd)  # removed as orphaned between the mkdir and the lock: make it again
        raise OSError(errno.EAGAIN, f"Media folder {self._path} was removed {MAX_LOCK_TRIES} times as it was made")

    def wait_for(self, folder: str, barrier: Request) -> None:
        """Remove ``folder`` once ``barrier`` is answered; folders whose barrier failed wait for this one."""
        self._waiting = [(old, barrier if req.done and req.error is not None else req) for old, req in self._waiting]
        self._waiting.append((folder, barrier))

    def take_written(self) -> list[str]:
        """The folders whose barrier was answered, forgotten here, for the caller to remove (outside
        the sender's lock); those whose barrier failed are kept (see wait_for)."""
        written = [folder for folder, req in self._waiting if req.done and req.error is None]
        self._waiting = [(folder, req) for folder, req in self._waiting if not (req.done and req.error is None)]
        return written

    @staticmethod
    def remove(folders: list[str]) -> None:
        for folder in folders:
            _remove(folder)

    def remove_if_empty(self) -> None:
        """At close: remove the media folder if no folder waits in it, so a process that logged a
        large figure leaves nothing behind. It stays held (locked) until the process exits: one
        that still waits there is needed until then, or until its spool is delivered."""
        if self._fd >= 0 and not self._waiting:
            with contextlib.suppress(OSError):  # not empty: a figure's folder the sender thread still sends
                os.rmdir(self._path)

    def abandon(self) -> None:
        """In a forked child: the parent's folders are the parent's to remove."""
        self._waiting = []
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # the parent's lock stays: it holds the same open file
        self._fd = -1


def remove_delivered(directory: Path, client_id: str) -> None:
    """The spool of ``client_id`` in ``directory`` is written whole: its media folder holds nothing
    the daemon still needs (its process is gone: the spool was not locked)."""
    _remove(media_folder(directory, client_id))


def has_media_folders(directory: Path) -> bool:
    """Whether ``directory`` holds any media folder (one that ``remove_orphaned`` may remove)."""
    try:
        # Closed here: any() stops at the first, and an iterator left open warned ResourceWarning.
        with os.scandir(directory) as entries:
            return any(entry.name.endswith(MEDIA_SUFFIX) for entry in entries)
    except OSError:
        return False


def remove_orphaned(directory: Path) -> list[Path]:
    """Remove the media folders in ``directory`` that no spool file waits for and no live process
    holds; return them. Their records were written (or lost): nothing will copy from them."""
    removed: list[Path] = []
    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.endswith(MEDIA_SUFFIX)]
    except OSError:
        return removed
    for entry in entries:
        client_id = entry.name.removesuffix(MEDIA_SUFFIX)
        spool = spool_file(directory, client_id)
        if spool.exists() or spool.with_name(f"{client_id}{SET_ASIDE_SUFFIX}").exists():
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or not a folder of trackd's making
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process lives, and removes its folders itself
            # Checked again under the lock: a process that spooled meanwhile waits for its deliverer.
            if spool.exists() or not _names(Path(entry.path), fd):
                continue
            _remove(entry.path)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the folder open as ``fd``."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)



def _remove(folder: str | Path) -> None:
    import shutil  # here: only once a large figure was logged, or a delivery finds a media folder

    shutil.rmtree(folder, ignore_errors=True)
