"""The files beside the daemon's socket: the lock that makes it the socket's only daemon, a socket
file a dead daemon left, and the pid file, removed in that order's reverse at shutdown; and the
write journal, opened at start."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._paths import DaemonPaths, read_exit_report, read_pid_file
from .._peer import connect
from ..store import JournalUnreadable, WriteJournal

if TYPE_CHECKING:
    from ._listener import Listener

logger = logging.getLogger("trackd.daemon")


class AlreadyRunning(Exception):
    """Another daemon holds this socket's lock."""


class CannotStart(Exception):
    """The daemon's own files cannot be made (a full disk under the socket's folder): one line says why."""


def take_lock(paths: DaemonPaths) -> IO[bytes]:
    """The socket's lock file, locked for as long as it stays open; AlreadyRunning if another daemon holds it."""
    lock = open(paths.lock, "ab")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise AlreadyRunning(
            f"A trackd daemon is already running on {paths.socket} (pid {_read_pid(paths.pid)})."
        ) from None
    return lock


def open_journal(paths: DaemonPaths) -> WriteJournal:
    """The write journal beside the socket, recovered (``WriteJournal.open``); CannotStart if it cannot be read or written."""
    try:
        return WriteJournal.open(str(paths.journal))
    except OSError as exc:
        # Its folder's disk is full ($XDG_RUNTIME_DIR is a small tmpfs): a traceback said so before.
        # A read that failed (EIO) was told as "cannot be written" too, sending users to check space.
        failed = "read" if isinstance(exc, JournalUnreadable) else "written"
        raise CannotStart(
            f"the write journal {paths.journal} cannot be {failed} ({exc.strerror or exc}); the journal is "
            "kept as it was, and clients spool their events until a daemon can start"
        ) from exc


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file that nothing answers on; refuse to replace a live daemon."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect(probe, str(path), 1.0)
    except OSError:
        logger.info("Removing stale socket %s", path)
        path.unlink()
    else:
        raise AlreadyRunning(f"Another process answers on {path}; refusing to replace a live daemon.")
    finally:
        probe.close()


def unclean_exit(paths: DaemonPaths) -> int | None:
    """The pid of the last daemon on this socket when it ended without a clean exit; None otherwise.
    Call with the lock held, before writing the pid file.

    A daemon that exits cleanly removes its pid file, then writes its exit report; one killed
    (kill -9, the OOM killer) or crashed leaves its pid file, and no report of its pid. Nothing
    said so: the next daemon started as if nothing had happened.
    """
    pid = read_pid_file(paths)
    if pid is None or pid <= 0 or read_exit_report(paths, pid) is not None:
        return None
    return pid


def write_pid_file(path: Path, pid: int) -> None:
    """Write the pid file whole (a temp file, then a rename), so no reader ever finds it empty."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(f"{pid}\n")
    os.replace(temp, path)


def remove_daemon_files(paths: DaemonPaths, lock: IO[bytes] | None, listener: Listener | None) -> None:
    """Remove the socket and pid file, then let the lock go (closing its file).

    Only this daemon's: a socket file put in place of its own (another daemon's, any file) stays,
    and so does the pid file once the lock file is not the one it locked (a daemon started in a
    new folder at the same path wrote it).
    """
    mine = listener is None or listener.lock_is_ours()
    for path, ours in ((paths.socket, listener is not None and listener.socket_is_ours()), (paths.pid, mine)):
        if ours:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if lock is not None:
        lock.close()


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"
