"""Who is on the other end of a Unix socket: the peer's uid and pid, as the kernel reports them;
and reaching that end (``connect``), while its listen queue is full too.

Both ends ask. The daemon checks each connection before a byte of it is read: the socket directory
(0700) and the socket (0600) already keep other users out, but modes can be loosened by mistake (a
shared ``$TRACKD_SOCKET`` folder, a ``chmod -R``), and ``Hello.pid`` is the client's word, not the
kernel's. The client checks the listener before it sends a byte: whoever created the socket's
folder first owns it, and in ``/tmp`` (the default without ``$XDG_RUNTIME_DIR``) another user can
create ``/tmp/trackd-<uid>/`` and listen there, then take and acknowledge everything the client
sends. The CLI asks for the listener's pid (``trackd daemon stop``).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable

# struct ucred { pid_t pid; uid_t uid; gid_t gid; } (unix(7), SO_PEERCRED).
_UCRED = struct.Struct("3i")


def _load_getpeereid() -> Callable[[int], int] | None:
    """libc's getpeereid(3) (BSD, macOS), wrapped; None where libc has no such function."""
    # Here, not at the top: every client process imports this module, and Linux never needs ctypes.
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.getpeereid
    except (OSError, AttributeError):
        return None

    def getpeereid(fd: int) -> int:
        uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
        if function(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
            raise OSError(ctypes.get_errno(), "getpeereid failed")
        return int(uid.value)

    return getpeereid


_SO_PEERCRED: int | None = getattr(socket, "SO_PEERCRED", None)
# Only looked up where SO_PEERCRED is missing: Linux's libc has no getpeereid.
_getpeereid = None if _SO_PEERCRED is not None or sys.platform == "win32" else _load_getpeereid()


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process that connected ``sock``; None where the platform cannot tell."""
    if _SO_PEERCRED is not None:
        _, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, _UCRED.size))
        return int(uid)
    if _getpeereid is not None:
        return _getpeereid(sock.fileno())
    return None


def credentials_supported() -> bool:
    """Whether peer_uid() can answer on this platform (logged once at startup when it cannot)."""
    return _SO_PEERCRED is not None or _getpeereid is not None


# macOS: getsockopt(SOL_LOCAL, LOCAL_PEERPID) (sys/un.h); Python's socket module names neither.
_SOL_LOCAL, _LOCAL_PEERPID = 0, 0x002


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of ``sock``, as the kernel reports it in this
    process's pid namespace (0: a process this namespace cannot see); None where the platform
    cannot tell.

    For a connected client socket that is the process that called listen(): the daemon itself,
    whatever it says about itself or its pid file says (``trackd daemon stop`` relies on it).
    """
    if _SO_PEERCRED is not None:
        pid, _, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, _UCRED.size))
        return max(int(pid), 0)
    if sys.platform == "darwin":
        try:
            return int(sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID))
        except OSError:
            return None
    return None


# The peer sends no more (Linux: POLLRDHUP, shutdown(SHUT_WR) or close), or closed the socket
# altogether (POLLHUP: closed, or its process exited), bytes it sent possibly still unread.
_DONE_SENDING = getattr(select, "POLLRDHUP", 0) | select.POLLHUP


def peer_done_sending(fd: int) -> bool:
    """Whether the peer of the connected socket ``fd`` will send nothing more: it closed its end,
    or its process exited (what it sent may still wait to be read)."""
    return _polled(fd, _DONE_SENDING)


def peer_closed(fd: int) -> bool:
    """Whether the peer of the connected socket ``fd`` closed it altogether (or exited): nobody
    reads what is written to it, and on Linux the write fails (EPIPE)."""
    return _polled(fd, select.POLLHUP)


def _polled(fd: int, mask: int) -> bool:
    poller = select.poll()
    poller.register(fd, mask)
    return any(events & mask for _, events in poller.poll(0))


def process_state(pid: int) -> tuple[str | None, int | None]:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc/<pid>/stat;
    (None, None) where it cannot be read (no such process, not Linux).

    A zombie ("Z") has exited and waits for its parent to reap it: signal 0 still finds it. The
    start time tells a process from a later one given the same pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0].decode("ascii", "replace"), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None, None


def process_started_ms(pid: int) -> int | None:
    """When ``pid`` started, in wall-clock milliseconds (to a clock tick, 10 ms), from its start in
    ticks since boot and the time since boot (/proc/uptime: the same clock); None where they cannot
    be read (not Linux)."""
    _, started = process_state(pid)
    try:
        with open("/proc/uptime", "rb") as file:
            uptime = float(file.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if started is None or ticks <= 0:
        return None
    return int((time.time() - uptime + started / ticks) * 1000)


def process_exited(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` (``process_state``'s clock ticks;
    None: unknown) runs no more code: no such pid, a zombie, or another process given the pid since
    (another start time). A pid of another user's process is looked at the same way."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError as exc:
        if exc.errno != errno.EPERM:  # EPERM: a process of another user has the pid; looked at below
            return False
    state, now_started = process_state(pid)
    if state in ("Z", "X"):
        return True
    return started is not None and now_started is not None and now_started != started


# How long ``connect`` sleeps between tries while the listener's queue is full.
CONNECT_RETRY_INTERVAL = 0.01


def connect(sock: socket.socket, path: str, timeout: float, *, give_up: Callable[[], bool] | None = None) -> None:
    """Connect Unix socket ``sock`` to ``path`` within ``timeout`` seconds (``sock``'s timeout then).

    A connect with a timeout is non-blocking, and on a Unix socket whose listen queue is full it
    fails with EAGAIN at once, where TCP would wait: `trackd daemon status` said "not running" of a
    daemon whose queue a burst of clients filled for a moment. It is tried again, every
    CONNECT_RETRY_INTERVAL, until ``timeout`` passes or ``give_up()`` says so; then its EAGAIN
    (BlockingIOError) is raised. Any other error is raised at once.
    """
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (give_up is not None and give_up()):
                raise
        time.sleep(min(CONNECT_RETRY_INTERVAL, remaining))
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
