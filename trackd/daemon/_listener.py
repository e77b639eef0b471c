"""The daemon's listening socket: bound at start, watched once a second, bound again when its file
is removed, and given up (the daemon then stops) when its place is taken.

A socket file removed from under a listening daemon (a user's `rm`, a temp-file cleaner such as
systemd-tmpfiles, a script emptying the folder) leaves the daemon listening on a name no process
can reach: connected clients carried on, every new process waited its connect timeout for a
daemon "starting", and `trackd daemon start` and `stop` found one that held the lock and did not
listen, for as long as it lived (for ever, started without an idle timeout). The daemon still holds
the lock, so no other daemon may serve that path: it binds a new socket there. When the path holds
something else, it is not this daemon's place any more: it stops (it still holds the lock, so no
other daemon starts until it has). When its lock file is no longer the one it locked (the folder
was removed), it says so and serves on, as before the watch: stopping let a new daemon start in
a new folder while this one still wrote its files there by path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import IO

from .._paths import SOCKET_MODE, DaemonPaths, check_private_directory, read_pid_file
from ._files import write_pid_file
from ._streams import start_unix_server

logger = logging.getLogger("trackd.daemon")

# How often the socket's path and the lock file are looked at: two lstat() calls, on the event loop.
WATCH_INTERVAL = 1.0
# The listen queue: a burst of processes connecting at once (a job's workers) waits there.
LISTEN_BACKLOG = 512

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# A file's (st_dev, st_ino): what names it whatever path leads to it, while the file exists. The
# daemon's own socket and lock file exist as long as it holds them (unix_bind keeps the socket's
# path, and every accepted connection a reference to it; the lock is an open file): a number in
# use names no other file on that device, however the path was changed meanwhile.
FileId = tuple[int, int]


def _file_id(info: os.stat_result) -> FileId:
    return info.st_dev, info.st_ino


class Listener:
    """The listening socket at ``paths.socket`` of the daemon holding ``lock`` (its locked lock file)."""

    def __init__(self, paths: DaemonPaths, lock: IO[bytes], connected: Connected) -> None:
        self.paths = paths
        self._lock = lock
        self._connected = connected
        self._server: asyncio.AbstractServer | None = None
        self._socket_id: FileId | None = None  # the socket file this daemon bound last
        self._socket_ctime_ns = 0  # its change time once made 0600, as socket_is_ours compares it

    async def start(self) -> None:
        """Listen at the socket path, which must be free (OSError otherwise)."""
        # Nothing else runs yet: the umask (the process's, not the thread's) keeps the socket 0600
        # from its first moment; the directory is 0700 already.
        old_umask = os.umask(0o177)
        try:
            sock = self._bind()
        finally:
            os.umask(old_umask)
        await self._serve(sock)

    def close(self) -> None:
        """Accept no new connections (those accepted go on); the watch ends at its next look."""
        if self._server is not None:
            self._server.close()
        self._server = None

    def socket_is_ours(self) -> bool:
        """Whether the socket path still holds the socket file this daemon bound, for shutdown to remove it.

        Asked once the listener and every connection are closed: the daemon holds the file no
        more, and one removed then (a user's `rm`) frees its inode number, which the file made
        next at the path may be given (ext4 and XFS reuse freed numbers at once): its (device,
        inode) matched, and shutdown removed that file. Its change time tells them apart too; the
        daemon changes nothing of its socket file after the chmod this was recorded after. A
        socket file a user chmod-ed, touched or linked since is left: stale, which the next
        daemon finds answering nothing and removes (``remove_stale_socket``).
        """
        try:
            info = os.lstat(self.paths.socket)
        except OSError:
            return False
        return self._socket_id == _file_id(info) and self._socket_ctime_ns == info.st_ctime_ns

    def lock_is_ours(self) -> bool:
        """Whether the lock file's path still leads to the file this daemon locked: not if it was
        removed (its folder with it), or replaced by another daemon's."""
        try:
            # stat, not lstat: the lock was opened through whatever the path leads to.
            return _file_id(os.stat(self.paths.lock)) == _file_id(os.fstat(self._lock.fileno()))
        except OSError:
            return False

    async def watch(self, stop: Callable[[str], None]) -> None:
        """Every WATCH_INTERVAL: bind the socket again if its file was removed; call ``stop`` with
        the reason, and end, when the path holds another file; end, saying so, when the lock file
        is not this daemon's any more (the daemon serves on)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self._server is None:
                return  # closed: the daemon is shutting down
            if not self.lock_is_ours():
                # Shutting down here let another daemon start beside this one while it still wrote
                # its wills, journal and exit report by path (a review: two daemons on one folder,
                # one's wills file replacing the other's). Serving on, as before the watch, keeps
                # this daemon's socket, if still there, answering, which keeps a second one from starting.
                logger.warning(
                    "Lock file %s was removed or replaced (its folder removed?): serving the connections and socket "
                    "this daemon has, no longer making a removed socket file again; `kill %d` ends it gracefully",
                    self.paths.lock, os.getpid(),
                )
                return
            problem = await self._look()
            if problem is not None:
                stop(problem)
                return

    async def _look(self) -> str | None:
        """Heal a removed socket file; what makes the daemon stop, as a sentence, or None."""
        path = self.paths.socket
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return await self._listen_again()
        except OSError:
            return None  # cannot look (EACCES?): nothing to conclude, look again later
        # Not its ctime: listening, the daemon holds the file's inode (see FileId), and a user's
        # chmod or touch of its socket file, which changes ctime, is no reason to stop.
        if _file_id(info) == self._socket_id:
            return None
        return (
            f"Socket file {path} was replaced by another file, not this daemon's to remove: accepting no new "
            "connections and shutting down gracefully"
        )

    async def _listen_again(self) -> str | None:
        """Bind a new socket where the removed one was; None once listening, else why not."""
        path = self.paths.socket
        try:
            # As at start: a folder another user may write to is refused (they could swap the file).
            check_private_directory(self.paths.directory)
            sock = self._bind()
        except OSError as exc:
            # EADDRINUSE: a file appeared there since the look above; it is not this daemon's to take.
            return f"Socket file {path} was removed and a new one cannot be bound there ({exc}): shutting down gracefully"
        old = self._server
        try:
            await self._serve(sock)
        except OSError as exc:
            return f"Socket file {path} was removed and listening on a new one failed ({exc}): shutting down gracefully"
        if old is not None:
            old.close()  # its name is gone: no new connection can reach it; accepted ones go on
        if read_pid_file(self.paths) != os.getpid():
            write_pid_file(self.paths.pid, os.getpid())  # removed with the socket: `trackd daemon stop` reads it
        logger.warning("Socket file %s was removed; listening again on a new one", path)
        return None

    def _bind(self) -> socket.socket:
        """A Unix socket bound at the socket path, mode 0600; OSError (EADDRINUSE) if anything is there.

        Bound here rather than by create_unix_server, which removes a socket file already at the
        path: another daemon's, should one appear there between a look and the bind.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Outside start() the umask stays (the writer thread may be making store folders): until
            # the chmod, another user whose umask lets them write the file is still refused at
            # admission, by its uid (Server._admission).
            sock.bind(str(self.paths.socket))
            os.chmod(self.paths.socket, SOCKET_MODE)
            info = os.lstat(self.paths.socket)  # after the chmod, which changes its ctime
            self._socket_id, self._socket_ctime_ns = _file_id(info), info.st_ctime_ns
        except BaseException:
            sock.close()
            raise
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        try:
            self._server = await start_unix_server(self._connected, sock=sock, backlog=LISTEN_BACKLOG)
        except BaseException:
            sock.close()
            raise
