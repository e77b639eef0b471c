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
- a media folder with no spool file beside it and no live process holding it is removed by the
  next delivery too (``remove_orphaned``), once the daemon its process sent to has nothing of
  that process left to write (see ``_why_kept``). A live process holds a shared ``flock`` on its
  media folder, so it is never taken from under it.

The temporary directory was used before, and a spooled figure's folder there was never removed
(``trackd-artifact-*``, as large as the figure, after every outage); there it was also lost with
a reboot that cleared /tmp while the spool waited.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from .._paths import SET_ASIDE_SUFFIX, SPOOL_DIR_ENV, DaemonPaths, daemon_lock, ensure_private_directory
from ..errors import DaemonUnavailable
from ._control import query_status
from ._outbox import Request, warn
from ._spool import spool_file

MEDIA_SUFFIX = ".media"
# A new folder in a media folder: one per figure saved, or per logging call that copies large files.
FOLDER_PREFIX = "trackd-artifact-"
# Tries to make and lock a media folder that a delivery keeps removing as orphaned meanwhile.
MAX_LOCK_TRIES = 10
# In each media folder: who made it (its pid and host) and the daemon socket it sent to, as JSON.
# A delivery that finds the folder orphaned asks that daemon whether it still holds batches of
# that process before it removes the folder (see _why_kept).
OWNER_FILE_NAME = "owner"
# A media folder with no owner file (made by a trackd before 2026-11-27, or whose spool folder's
# disk had no room for the file) names no daemon to ask: it is removed once nothing in it changed
# for this long, as no daemon holds a batch that long but behind a store refusing writes all day.
UNRECORDED_ORPHAN_AGE = 24 * 60 * 60.0
# How long a delivery waits for a status reply before it keeps the folder for the next one.
STATUS_TIMEOUT = 5.0


def media_folder(directory: Path, client_id: str) -> Path:
    """The media folder of client ``client_id`` whose spool folder is ``directory``."""
    return directory / f"{client_id}{MEDIA_SUFFIX}"


class MediaFolders:
    """One client's media folder, held (locked) once made, and its folders waiting for a barrier."""

    def __init__(self, spool_dir: Path, client_id: str, socket_path: Path | None = None) -> None:
        self._spool_dir = spool_dir
        self._path = media_folder(spool_dir, client_id)
        # The daemon this process sends to, written in the owner file (None: a folder no delivery
        # can ask about, removed by age).
        self._socket_path = socket_path
        self._fd = -1
        # Guards _fd, and the media folder's making and removal: two threads that found it gone
        # (a delivery removed it as orphaned, or close() did) both closed the old descriptor, the
        # second perhaps one another thread had opened meanwhile, and one new descriptor leaked.
        self._lock = threading.Lock()
        # (folder, the barrier behind its records): removed once the barrier is answered.
        self._waiting: list[tuple[str, Request]] = []
        # Snapshots of large files that could not be made (``_snapshot``): said once, counted at close.
        self.snapshots_failed = 0

    def new_folder(self, *, in_temp_if_refused: bool = True) -> str:
        """A new folder to save a figure in; in the temporary directory if the spool folder cannot
        hold it (not private, read-only), as before: then nothing removes it if it is spooled.

        Snapshots of large files (``_snapshot``) pass ``in_temp_if_refused=False`` and get the
        OSError: the file they copy is there to send by its own path, and /tmp is often a tmpfs,
        in memory, where a checkpoint's copy does not belong.
        """
        import tempfile  # here: a process that logs no figure does not load it

        try:
            # Under the lock with the folder made in it: close() removing an empty media folder
            # (remove_if_empty) cannot come between the two.
            with self._lock:
                self._hold()
                return tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=self._path)
        except OSError:
            if not in_temp_if_refused:
                raise
            return tempfile.mkdtemp(prefix=FOLDER_PREFIX)

    def _hold(self) -> None:
        """Make the media folder if need be, and lock it (shared) for as long as this process
        lives; with ``self._lock`` held."""
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
                self._write_owner()
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

    def note_snapshot_failed(self) -> bool:
        """Count a snapshot that could not be made (``_snapshot``); True for the first, which is said."""
        with self._lock:
            self.snapshots_failed += 1
            return self.snapshots_failed == 1

    def warn_snapshots_failed(self) -> None:
        """At close: how many large files went by their own paths for a copy that failed, when the
        first one's line (said once) did not tell it all."""
        with self._lock:
            failed, self.snapshots_failed = self.snapshots_failed, 0
        if failed > 1:
            warn(
                f"{failed} large artifact files in all could not be copied at the call and were copied by the daemon "
                "from their own paths after it (the first is named above)."
            )

    def _write_owner(self) -> None:
        """Write who holds the media folder, and which daemon it sends to, for a later delivery
        (``_why_kept``); with ``self._lock`` held. Without it the folder is removed by age."""
        if self._socket_path is None:
            return
        # Absolute: the delivery that reads it may run in another folder (TRACKD_SOCKET=d.sock).
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "socket": os.path.abspath(self._socket_path)}
        with contextlib.suppress(OSError):  # no room: the folder goes by age instead
            fd = os.open(self._path / OWNER_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, json.dumps(owner).encode())
            finally:
                os.close(fd)

    def remove_if_empty(self) -> None:
        """At close: remove the media folder if no folder waits in it, so a process that logged a
        large figure leaves nothing behind. It stays held (locked) until the process exits: one
        that still waits there is needed until then, or until its spool is delivered."""
        with self._lock:
            if self._fd < 0 or self._waiting:
                return
            try:
                if set(os.listdir(self._path)) - {OWNER_FILE_NAME}:
                    return  # a figure's folder the sender thread still sends
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path / OWNER_FILE_NAME)
                os.rmdir(self._path)
            except OSError:
                if _names(self._path, self._fd):
                    self._write_owner()  # kept after all: a later delivery must still find whom to ask

    def abandon(self) -> None:
        """In a forked child: the parent's folders are the parent's to remove."""
        # A thread of the parent may have held the lock at the fork: held for ever here.
        self._lock = threading.Lock()
        self._waiting = []
        self.snapshots_failed = 0
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


def remove_orphaned(directory: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Remove the media folders in ``directory`` that no spool file waits for, no live process
    holds and no daemon will still copy from; return those removed, and those kept with why.

    Such a folder's process is gone without spooling, but a record it sent may still wait in
    the daemon (its store's disk full, the daemon holding the batch until it takes writes): the
    folder is removed only once that daemon wrote everything it holds of the process (``_why_kept``).
    Removed at once, as it used to be, the artifact was refused as "cannot be read" once the
    disk had room again: lost to trackd's own cleanup.
    """
    removed: list[Path] = []
    kept: list[tuple[Path, str]] = []
    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.endswith(MEDIA_SUFFIX)]
    except OSError:
        return removed, kept
    answers: dict[str, Mapping[str, object] | str | None] = {}  # one status query per daemon
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
            why = _why_kept(Path(entry.path), answers)
            if why is not None:
                kept.append((Path(entry.path), why))
                continue
            _remove(entry.path)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed, kept


def _why_kept(folder: Path, answers: dict[str, Mapping[str, object] | str | None]) -> str | None:
    """Why the orphaned media folder ``folder`` may still be copied from; None when it will not be.

    The rule, for a folder whose owner file names its process and daemon: a record by path into
    the folder is only ever copied by the daemon that received it, while that daemon holds the
    record's batch unwritten, and a batch sent is held by its session: the client sends such a
    record only after the Welcome (never among the batches it sends ahead of it), so the session exists, and it stays ``connected`` until the daemon has
    read the connection to its end (what the dead process left in the socket included), then
    stays until everything received is written (``Session.finished``, the daemon's own rule for
    forgetting it). So the folder is kept while that daemon's status lists a session of the
    process (its pid and host) connected or with a batch received and not written, or while the
    daemon cannot say (no answer in time, status truncated); removed when it lists none, or when
    no daemon runs on that socket at all (its lock free: the batches died with it, and nobody
    resends for a dead process). Another host's folder waits for a delivery on that host.
    """
    owner = _read_owner(folder)
    if owner is None:
        age = time.time() - _last_change(folder)
        if age >= UNRECORDED_ORPHAN_AGE:
            return None
        return (
            f"it names no daemon to ask whether its files are copied (no {OWNER_FILE_NAME} file), and it changed "
            f"{age:.0f} s ago: such a folder is removed once unchanged for {UNRECORDED_ORPHAN_AGE:.0f} s"
        )
    pid, host, socket_path = owner
    if host != socket.gethostname():
        return f"its process ran on host {host}: a delivery there asks the daemon it sent to"
    if socket_path not in answers:
        answers[socket_path] = _ask(Path(socket_path))
    answer = answers[socket_path]
    if answer is None:
        return None  # no daemon runs there: nothing will copy from the folder
    if isinstance(answer, str):
        return answer
    clients = answer.get("clients")
    listed = [c for c in clients if isinstance(c, dict)] if isinstance(clients, (list, tuple)) else []  # msgpack arrays decode as tuples
    for client in listed:
        if client.get("pid") != pid or client.get("host") != host:
            continue
        received, written = client.get("received_seq"), client.get("written_seq")
        if client.get("connected") or not isinstance(received, int) or not isinstance(written, int) or received > written:
            return (
                f"the daemon at {socket_path} has not written everything its process (pid {pid}) sent yet "
                f"({client.get('backlog_records')} records wait); a later delivery removes it once it has"
            )
    known = answer.get("clients_known")
    if not isinstance(known, int) or known > len(listed):
        return f"the daemon at {socket_path} knows more clients than its status lists: it cannot say whether pid {pid}'s batches are written"
    return None


def _ask(socket_path: Path) -> Mapping[str, object] | str | None:
    """The status of the daemon at ``socket_path``; None when no daemon runs there; why, when it cannot say."""
    try:
        return query_status(socket_path, timeout=STATUS_TIMEOUT)
    except (DaemonUnavailable, OSError) as exc:
        reason = str(exc).rstrip(".")
    try:
        with daemon_lock(DaemonPaths(socket_path)) as free:
            if free:
                return None
    except OSError:
        pass  # its folder unreadable: say it cannot be asked
    return f"the daemon at {socket_path} did not say whether its batches are written ({reason}); a later delivery asks again"


def _read_owner(folder: Path) -> tuple[int, str, str] | None:
    """(pid, host, socket) from ``folder``'s owner file; None without one, or one not of trackd's writing."""
    try:
        with open(folder / OWNER_FILE_NAME, "rb") as file:
            owner = json.loads(file.read(64 * 1024))
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict):
        return None
    pid, host, socket_path = owner.get("pid"), owner.get("host"), owner.get("socket")
    if type(pid) is not int or not isinstance(host, str) or not isinstance(socket_path, str) or not socket_path:
        return None
    return pid, host, socket_path


def _last_change(folder: Path) -> float:
    """The latest modification time of ``folder`` and the folders in it (wall clock, seconds)."""
    latest = 0.0
    with contextlib.suppress(OSError):
        latest = os.stat(folder).st_mtime
        with os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    latest = max(latest, entry.stat(follow_symlinks=False).st_mtime)
    return latest


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
