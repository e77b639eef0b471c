"""Where the daemon's socket, lock, pid, log and exit-report files live, for the client, the daemon
and the CLI, and what the CLI may conclude from them.

One daemon serves every process of a user on a machine, so its files sit in a per-user runtime
directory: ``$XDG_RUNTIME_DIR/trackd/`` when that is set, else ``<tmp>/trackd-<uid>/``
(``<tmp>``: ``temp_directory()``, ``$TMPDIR`` else ``/tmp``).
``$TRACKD_SOCKET`` names the socket directly; its siblings then live beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ._struct import Frozen

SOCKET_ENV = "TRACKD_SOCKET"
# The CLI's option for the same path: advice names the one the user used.
SOCKET_OPTION = "--socket"
# What chooses the spool folder: the variable, or the CLI option of `trackd sync` and `trackd daemon status`.
SPOOL_DIR_ENV = "TRACKD_SPOOL_DIR"
SPOOL_DIR_OPTION = "--spool-dir"
SOCKET_FILE_NAME = "trackd.sock"
# ``python -m trackd.daemon`` exits with this when another daemon holds the socket's lock (one
# starting at the same moment), so a client that started it keeps waiting for the socket.
ALREADY_RUNNING_EXIT_CODE = 3
# ... and with this when it stopped with events it had received but could not write within its
# shutdown timeout (a full disk): it never acknowledged them, so their clients send them again.
UNWRITTEN_EXIT_CODE = 4
RUNTIME_DIR_MODE = 0o700
SOCKET_MODE = 0o600
# The longest socket path bind() and connect() take: sun_path holds 108 bytes on Linux and 104 on
# macOS and the BSDs, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103
# A spool file: ``<client id>.spool``; one the background delivery could not deliver for its own
# sake is renamed to end in SET_ASIDE_SUFFIX and left to `trackd sync`. The daemon waits for either
# before failing the runs of the process that wrote it (daemon/_wills.py).
SPOOL_SUFFIX = ".spool"
SET_ASIDE_SUFFIX = ".undeliverable" + SPOOL_SUFFIX


def spool_paths(spool_path: str) -> tuple[str, str]:
    """A client's spool file, and the name it has once set aside."""
    return spool_path, spool_path.removesuffix(SPOOL_SUFFIX) + SET_ASIDE_SUFFIX


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
    def starting(self) -> Path:
        """Locked by the process starting a daemon (``client._launcher.start_and_wait``)."""
        return self.socket.with_name(self.socket.name + ".starting")

    @property
    def pid(self) -> Path:
        return self.socket.with_name(self.socket.name + ".pid")

    @property
    def journal(self) -> Path:
        return self.socket.with_name(self.socket.name + ".journal")

    @property
    def log(self) -> Path:
        return self.socket.with_name(self.socket.name + ".log")

    @property
    def wills(self) -> Path:
        """The wills the daemon knows (daemon/_wills_file.py), for the next daemon if it stops or is killed."""
        return self.socket.with_name(self.socket.name + ".wills")

    @property
    def wills_journal(self) -> Path:
        """The changes of the wills since the daemon last rewrote ``wills``, one line each, appended at once."""
        return self.socket.with_name(self.socket.name + ".wills.log")

    @property
    def waits_said(self) -> Path:
        """The exit waits for this daemon said on each stderr, until when and by which process (``client._family_notice``):
        the ranks of a job on one stderr say theirs once."""
        return self.socket.with_name(self.socket.name + ".waits")

    @property
    def exit_report(self) -> Path:
        """What the last daemon to stop said as it exited (``write_exit_report``)."""
        return self.socket.with_name(self.socket.name + ".exit")


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


def socket_path_problem(path: Path, *, setting: str = SOCKET_ENV) -> str | None:
    """Why no daemon can listen on ``path``, and what to set instead (no final stop), or None.

    A deep $XDG_RUNTIME_DIR, $TMPDIR or $TRACKD_SOCKET gave "OSError: AF_UNIX path too long" from
    the daemon's bind(), which said neither how long is too long nor what to change. ``setting``
    names what chose the path (SOCKET_ENV, or the CLI's SOCKET_OPTION), which the advice names.
    """
    size = len(os.fsencode(path))
    if size <= MAX_SOCKET_PATH_BYTES:
        return None
    change = f"pass {SOCKET_OPTION}" if setting == SOCKET_OPTION else f"set {setting} to"
    return (
        f"its path is {size} bytes long, more than the {MAX_SOCKET_PATH_BYTES} a Unix socket path may "
        f"have; {change} a shorter one, e.g. /tmp/trackd-{os.getuid()}/{SOCKET_FILE_NAME}"
    )


def ensure_private_directory(directory: Path, *, variable: str = SOCKET_ENV) -> None:
    """Create ``directory`` as 0700, or check that an existing one is ours and not writable by others.

    A socket (or spool file) in a directory that another user can write could be replaced under
    us, so such a directory is refused rather than used; PermissionError says so and what to set
    instead (``variable``: the one that chose this directory, or the CLI's SOCKET_OPTION).
    """
    directory.mkdir(mode=RUNTIME_DIR_MODE, parents=True, exist_ok=True)
    check_private_directory(directory, variable=variable)


def check_private_directory(directory: Path, *, variable: str = SOCKET_ENV) -> None:
    """Raise PermissionError, saying what to set instead, unless existing ``directory`` is private."""
    problem = private_directory_problem(directory)
    if problem is not None:
        raise PermissionError(f"{problem} {_instead(directory, variable)}")


def private_directory_problem(directory: Path) -> str | None:
    """Why trackd refuses the existing ``directory`` for its files (a sentence), or None if it is private."""
    link = directory.lstat()
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.getuid(), 0):  # root's links: root can do anything
        # Where /tmp does not protect links (fs.protected_symlinks=0: many containers), another
        # user's /tmp/trackd-<uid> -> one of this user's private folders passes the checks below,
        # and its owner can point it at a folder of theirs once trackd's files are in place.
        return (
            f"trackd refuses the folder {directory}: it is a symbolic link owned by uid {link.st_uid}, "
            f"who can point it elsewhere at any time."
        )
    info = directory.stat()
    if info.st_uid != os.getuid():
        return (
            f"trackd refuses the folder {directory}: it belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.getuid()})."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"trackd refuses the folder {directory}: other users can write to it (mode "
            f"{stat.S_IMODE(info.st_mode):o}), so they could replace trackd's files there; it needs a "
            "folder only you can write (mode 700)."
        )
    return None


def _instead(directory: Path, variable: str) -> str:
    if variable == SOCKET_OPTION:
        # `trackd daemon start --socket /tmp/x.sock`: the option was refused, not the variable.
        return (
            f"Pass {SOCKET_OPTION} a socket path in such a folder, e.g. "
            f"{directory / f'trackd-{os.getuid()}' / SOCKET_FILE_NAME} (trackd creates the folder), "
            f"or leave {SOCKET_OPTION} out for the default."
        )
    if variable == SOCKET_ENV:
        # A socket put straight into /tmp is the usual case: a private folder of its own there works.
        return (
            f"Set {SOCKET_ENV} to a socket path in such a folder, e.g. "
            f"{directory / f'trackd-{os.getuid()}' / SOCKET_FILE_NAME} (trackd creates the folder), "
            f"or unset {SOCKET_ENV} for the default."
        )
    name = f"trackd-spool-{os.getuid()}" if variable in (SPOOL_DIR_ENV, SPOOL_DIR_OPTION) else f"trackd-{os.getuid()}"
    if variable == SPOOL_DIR_OPTION:
        # `trackd sync --spool-dir /tmp`: the option chose the folder, not the variable.
        return f"Pass {SPOOL_DIR_OPTION} such a folder, e.g. {directory / name}."
    return f"Set {variable} to such a folder, e.g. {directory / name} (trackd creates it)."


@contextlib.contextmanager
def daemon_lock(paths: DaemonPaths) -> Iterator[bool]:
    """Try the lock a running daemon holds (``daemon._files.take_lock``), without waiting.

    Yields False while a daemon holds it: one is running (it may be starting, stopping or hung).
    Yields True when none does; this process then holds the lock until the block ends, so no
    daemon can start and write its pid file meanwhile (one that tries exits as already running,
    and its starter waits for the socket). The kernel releases a daemon's lock when it dies, even
    by SIGKILL, which is what makes this proof where a pid file is only a hint.
    """
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        yield True  # no runtime directory: no daemon ever ran here
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # releases the lock, if it was taken


def lock_holder(paths: DaemonPaths) -> int | None:
    """The pid of the process holding the daemon's lock file, as the kernel lists its flock locks
    in /proc/locks (Linux); None when none holds it. OSError when the list cannot be read (not
    Linux) or the lock file is gone.

    Unlike the pid file, this is proof: the kernel drops the lock with its holder, and names the
    process that took it (0 for one in a pid namespace this process cannot see).
    """
    info = os.stat(paths.lock)
    # "1: FLOCK  ADVISORY  WRITE 714 fe:00:3474034 0 EOF": the device as hex major:minor, then the inode.
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    with open("/proc/locks") as listed:
        for line in listed:
            fields = line.split()
            # "1: -> FLOCK ...": a process waiting for the lock, not holding it.
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
                return int(fields[4])
    return None


def read_pid_file(paths: DaemonPaths) -> int | None:
    """The pid in the pid file, or None. Only a hint: after SIGKILL it names a pid the system may
    have given to another process since."""
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def write_exit_report(paths: DaemonPaths, *, pid: int, unwritten: int) -> None:
    """Leave, as the daemon exits, how many events it received and could not write (0: none).

    The CLI that stopped it is not its parent and cannot read its exit status; it reads this.
    Written whole (a temp file, then a rename).
    """
    temp = paths.exit_report.with_name(paths.exit_report.name + ".tmp")
    temp.write_text(f"pid {pid}\nunwritten {unwritten}\n")
    os.replace(temp, paths.exit_report)


def read_exit_report(paths: DaemonPaths, pid: int) -> int | None:
    """How many received events daemon ``pid`` reported unwritten as it exited; None if it left no report."""
    try:
        fields = dict(line.split(" ", 1) for line in paths.exit_report.read_text().splitlines())
        if int(fields["pid"]) != pid:
            return None
        return int(fields["unwritten"])
    except (OSError, ValueError, KeyError):
        return None
