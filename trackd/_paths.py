"""Where the daemon's socket, lock, pid and log files live, for the client, the daemon and the CLI.

One daemon serves every process of a user on a machine, so its files sit in a per-user runtime
directory: ``$XDG_RUNTIME_DIR/trackd/`` when that is set, else ``/tmp/trackd-<uid>/``.
``$TRACKD_SOCKET`` names the socket directly; its siblings then live beside it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._struct import Frozen

SOCKET_ENV = "TRACKD_SOCKET"
SOCKET_FILE_NAME = "trackd.sock"
# ``python -m trackd.daemon`` exits with this when another daemon holds the socket's lock (one
# starting at the same moment), so a client that started it keeps waiting for the socket.
ALREADY_RUNNING_EXIT_CODE = 3
RUNTIME_DIR_MODE = 0o700
SOCKET_MODE = 0o600


class DaemonPaths(Frozen):
    """The files of one daemon, all in one private directory."""

    __slots__ = ("socket",)
    socket: Path

    def __init__(self, socket: Path) -> None:
        object.__setattr__(self, "socket", socket)

    @property
    def directory(self) -> Path:
        return self.socket.parent

    @property
    def lock(self) -> Path:
        return self.socket.with_name(self.socket.name + ".lock")

    @property
    def pid(self) -> Path:
        return self.socket.with_name(self.socket.name + ".pid")

    @property
    def journal(self) -> Path:
        return self.socket.with_name(self.socket.name + ".journal")

    @property
    def log(self) -> Path:
        return self.socket.with_name(self.socket.name + ".log")


def default_socket_path() -> Path:
    """The socket path this process uses: ``$TRACKD_SOCKET``, else the per-user runtime directory."""
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit).absolute()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "trackd" / SOCKET_FILE_NAME
    return Path(temp_directory()) / f"trackd-{os.getuid()}" / SOCKET_FILE_NAME


def temp_directory() -> str:
    """The system temp directory, chosen as ``tempfile.gettempdir()`` chooses it on POSIX: the first
    of $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp that is a directory this process can write,
    else the working directory.

    Not tempfile itself: it imports shutil and random, ~1.3 MB of RSS and ~1.5 ms in every client
    process, for one directory name. tempfile also tries creating a file in each candidate;
    os.access answers the same question for the directories a user points these variables at.
    Like tempfile, the answer is found once per process and kept: a process that changes $TMPDIR
    later still finds its daemon and spool where its first client looked.
    """
    global _temp_directory
    if _temp_directory is None:
        candidates = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
        found = [c for c in [*candidates, "/tmp", "/var/tmp", "/usr/tmp"]
                 if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK)]
        _temp_directory = os.path.abspath(found[0]) if found else os.getcwd()
    return _temp_directory


_temp_directory: str | None = None


def default_paths(socket: str | os.PathLike[str] | None = None) -> DaemonPaths:
    """DaemonPaths for ``socket``, or for this process's default socket."""
    return DaemonPaths(Path(socket).absolute() if socket is not None else default_socket_path())


def ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` as 0700, or check that an existing one is ours and not writable by others.

    A socket in a directory that another user can write could be replaced under us, so such a
    directory is refused rather than used.
    """
    directory.mkdir(mode=RUNTIME_DIR_MODE, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(
            f"The trackd runtime directory {directory} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.getuid()}); set {SOCKET_ENV} to a socket path in a directory you own."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"The trackd runtime directory {directory} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); expected a private directory (mode 700)."
        )
