"""A short-lived control connection to the daemon, and who listens on its socket when it does not
answer: what ``trackd daemon status`` uses, and what a client's request says of a silent daemon."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from typing import NamedTuple

from .._paths import DaemonPaths, daemon_lock, lock_holder, private_directory_problem, read_pid_file
from .._peer import connect, peer_pid, process_state
from ..errors import DaemonUnavailable
from ..protocol import NEED_DATA, ErrorCode, ErrorReply, GetStatus, StatusReply
from ._names import random_id
from ._transport import DaemonRefused, handshake, make_hello


def query_status(socket_path: Path, timeout: float = 5.0) -> dict[str, object]:
    """Ask the daemon on ``socket_path`` for its counters; raises DaemonUnavailable."""
    # An empty store root marks a control connection: it writes nothing.
    transport, protocol, _ = handshake(socket_path, make_hello(f"control-{random_id()}", ""), timeout=timeout)
    try:
        transport.send(protocol.send(GetStatus(request_id=1)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = protocol.next_event()
            if event is NEED_DATA:
                data = transport.receive(max(deadline - time.monotonic(), 0.01))
                if data is not None:
                    protocol.receive_data(data)
                continue
            if isinstance(event, StatusReply):
                return event.status
            if isinstance(event, ErrorReply) and event.code == ErrorCode.STORE_UNAVAILABLE:
                # Told to every connection when a disk refuses a write; the connection stays
                # (docs/protocol.md). Status on a full disk said "not running" for it.
                continue
            if isinstance(event, ErrorReply):
                raise DaemonRefused(event, socket_path)
            raise DaemonUnavailable(f"The trackd daemon closed the connection ({event!r}).")
        raise DaemonUnavailable(f"The trackd daemon at {socket_path} did not answer within {timeout:g} s.")
    finally:
        transport.close()


def listener_pid(socket_path: Path, *, ask: bool = True, timeout: float = 5.0) -> int | None:
    """The pid of the process listening on the socket, as the kernel reports it; None when nothing
    listens; 0 when something does but it cannot be told which process (in another pid namespace:
    a container sharing the folder), so nothing may be signalled.

    A stopped (SIGSTOP) or hung daemon still listens: the kernel queues the connection and names
    the listener. Where the kernel cannot tell at all (neither SO_PEERCRED nor LOCAL_PEERPID), the
    daemon's own status reply names it (``ask``): still an answer on this socket, not a file that
    outlives its writer. A client whose request the daemon did not answer does not ask it again.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect(probe, str(socket_path), timeout)
        pid = peer_pid(probe)
    except OSError:
        return None
    finally:
        probe.close()
    if pid is not None:
        return pid
    if not ask:
        return 0
    try:
        said = query_status(socket_path).get("pid")
    except DaemonUnavailable:
        return 0
    return said if isinstance(said, int) and said > 0 else 0


def stopped_words(pid: int) -> str | None:
    """What the process state of listener ``pid`` says when it is stopped, as a clause; None when
    it runs (or its state cannot be read: not Linux, another pid namespace)."""
    state, _ = process_state(pid) if pid > 0 else (None, None)
    if state == "T":
        # `trackd daemon stop` resumes it after its SIGTERM, which waits while it is stopped.
        return f"it is stopped (SIGSTOP, or Ctrl-Z in its terminal): `kill -CONT {pid}` resumes it, `trackd daemon stop` ends it"
    if state == "t":
        return f"it is stopped by a debugger or tracer attached to pid {pid}"
    return None


def unanswered_words(socket_path: Path, pid: int, timeout: float) -> str:
    """A daemon that accepts connections but did not answer within ``timeout`` seconds, as a clause:
    its pid, what its process state says, and what to do.

    A stopped or hung daemon was said to be "unreachable; ... none could be started. Start one with
    `trackd daemon start`" (which says it is already running), or to be "starting".
    """
    named = f" (pid {pid})" if pid > 0 else ""
    said = f"the trackd daemon at {socket_path}{named} accepts connections but did not answer within {timeout:g} s"
    stopped = stopped_words(pid)
    if stopped is not None:
        return f"{said}: {stopped}"
    # Its state read (Linux) and not stopped: hung (a deadlock, a stuck disk) or overloaded.
    known = pid > 0 and process_state(pid)[0] is not None
    why = "it may be hung, or too busy to answer" if known else "it may be stopped (SIGSTOP) or hung"
    end = f"`trackd daemon stop` ends it (`kill -9 {pid}` if that does not)" if pid > 0 else "`trackd daemon stop` ends it"
    return f"{said}: {why}; `trackd daemon status` says what it can, {end}, and the next trackd process starts a new one"


class SocketlessDaemon(NamedTuple):
    """A daemon that holds its lock while its socket path holds no socket (``without_socket``)."""

    pid: int  # as its pid file says
    doubt: str | None  # why it cannot be proven to be the lock's holder; None: proven (/proc/locks)


def without_socket(paths: DaemonPaths) -> SocketlessDaemon | None:
    """The daemon holding the lock of ``paths`` while its socket file is missing (removed by a user
    or a temp-file cleaner) or another kind of file, when its pid file names a live process; None
    otherwise (a socket is there, no daemon holds the lock, or no live pid is named).

    Such a daemon was said to be "starting (started by this process or another)" by the client,
    and "starting, stopping or hung" by `trackd daemon status`: it runs, and no process can reach it.
    A current daemon listens on a new socket within a second or two (daemon/_listener.py); an older
    one never does.
    """
    try:
        if os.path.lexists(paths.socket) and stat.S_ISSOCK(os.lstat(paths.socket).st_mode):
            return None  # a daemon starting or stopping, or a stale file: not this case
        # No lock file, no daemon (and none is made here); in a folder trackd refuses, nothing is trusted.
        if not paths.lock.exists() or private_directory_problem(paths.directory) is not None:
            return None
    except OSError:
        return None
    with daemon_lock(paths) as free:
        if free:
            return None
    pid = read_pid_file(paths)
    if pid is None or pid <= 0:
        return None
    try:
        holder = lock_holder(paths)
    except (OSError, ValueError) as exc:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return SocketlessDaemon(pid, f"this system does not list who holds a lock (/proc/locks: {exc})")
    # Another holder than the pid file's (a pid namespace this process cannot see: 0): nothing sure to say.
    return SocketlessDaemon(pid, None) if holder == pid else None


def without_socket_words(paths: DaemonPaths, found: SocketlessDaemon) -> str:
    """``found`` as a clause: which daemon holds the lock, that no process can reach it, and what to do."""
    missing = "is missing" if not os.path.lexists(paths.socket) else "is not a socket"
    holds = f"holds its lock {paths.lock}" if found.doubt is None else f"(its pid file says) seems to hold its lock {paths.lock}"
    return (
        f"the trackd daemon pid {found.pid} {holds} but its socket file {paths.socket} {missing} (removed by a user or "
        f"a temp-file cleaner?), so no process can reach it (a current daemon listens on a new one within seconds; "
        f"`trackd daemon stop` ends an older one{'' if found.doubt is None else f', or `kill {found.pid}`'}; see {paths.log})"
    )
