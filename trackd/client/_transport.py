"""The client's socket adapter: connect, handshake, send bytes, read available bytes.

Every wait here can be cut short. The sender thread passes an ``Interrupt``: its wake-up pipe
and a question to ask when poked. A daemon that is stopped (SIGSTOP, a debugger) rather than
dead still accepts connections and takes bytes until its socket buffer is full, so without this
the thread would sit in a handshake or a send for as long as the daemon stays stopped, and an
exiting process could neither deliver its events nor spool them.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from .._paths import SOCKET_ENV, private_directory_problem
from .._peer import connect, peer_uid
from ..errors import DaemonUnavailable, RemoteProtocolError
from ..protocol import NEED_DATA, PROTOCOL_VERSION, Connection, ErrorCode, ErrorReply, Hello, OwnedRuns, Role, Welcome

RECV_SIZE = 256 * 1024
# How often a handshake the daemon has not answered asks whether the client owns runs to tell it
# and has batches to send ahead (handshake's ``owned`` and ``ahead``): a run started, or a value
# logged, during the wait goes within the send interval, as it would once connected. A Welcome
# ends the wait at once whatever this is.
WILL_CHECK_INTERVAL = 0.05


@contextlib.contextmanager
def map_socket_errors(path: Path) -> Iterator[None]:
    """Turn an OSError from the socket into DaemonUnavailable, in one place."""
    try:
        yield
    except OSError as exc:
        raise DaemonUnavailable(f"The trackd daemon at {path} is unreachable: {exc.strerror or exc}.") from exc


def refused_words(path: Path, reason: str) -> str:
    """A daemon's refusal of this client (``reason``: what it said, its connection limit or its
    protocol version), as the one clause every line and error says it with.

    "Last attempt": a refusal is of one handshake, and its connection limit may pass. The lines
    said "refused this client (...)", "refused this client: ..." and "refused this client's last
    attempt to connect (...)" of the same refusal, a line apart.
    """
    return f"the daemon at {path} refused this client's last attempt to connect ({reason.rstrip('.')})"


class DaemonRefused(DaemonUnavailable):
    """A daemon answered the handshake with an ErrorReply: another protocol version (an older daemon
    still running after an upgrade), its connection limit. Starting one would not help: it runs."""

    def __init__(self, reply: ErrorReply, path: Path) -> None:
        words = refused_words(path, reply.message)
        super().__init__(f"{words[:1].upper()}{words[1:]}.")
        self.reason = reply.message
        self.code = reply.code
        # Refused until someone restarts the daemon (or runs it as this user): a bounded flush
        # (exit, end_run) has nothing to wait for. Its connection limit or a shutdown may pass.
        self.lasting = reply.code in (ErrorCode.VERSION_MISMATCH, ErrorCode.FORBIDDEN)


class HandshakeUnanswered(DaemonUnavailable):
    """A process listens on the socket and took the connection, but sent no Welcome in time: a
    daemon stopped (SIGSTOP), hung or too busy. None is starting: it runs."""


class Interrupt:
    """How the sender thread stops waiting on the socket: a byte on ``wake_fd`` wakes the wait,
    and ``requested()`` then says whether to give the daemon up."""

    __slots__ = ("poked", "requested", "wake_fd")

    def __init__(self, wake_fd: int, requested: Callable[[], bool]) -> None:
        self.wake_fd = wake_fd  # non-blocking read end of a pipe
        self.requested = requested
        # A wait here emptied the pipe: the poke was meant for the sender's loop too (a flush's,
        # during the handshake or a send), which must then not sleep its send interval.
        self.poked = False

    def check(self, path: Path) -> None:
        """Raise DaemonUnavailable if the daemon is to be given up."""
        if self.requested():
            raise gave_up_error(path)

    def woken(self, path: Path) -> None:
        """The pipe woke a wait: empty it, note it, then ``check``."""
        empty_pipe(self.wake_fd)
        self.poked = True
        self.check(path)


def empty_pipe(fd: int) -> None:
    """Read everything waiting in the non-blocking pipe ``fd`` (the sender's wake-ups)."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def readable(fds: list[int], timeout: float) -> list[int]:
    """The descriptors of ``fds`` that are readable within ``timeout`` seconds. poll(), not
    select(): select() refuses descriptors past 1024, which a training process that holds many
    files open hands out, and the sender thread died of it."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(0.0, timeout) * 1000.0)]


def gave_up_error(path: Path) -> DaemonUnavailable:
    """What a wait cut short by the sender says."""
    return DaemonUnavailable(f"Gave up waiting for the trackd daemon at {path}.")


def end_connection(sock: socket.socket) -> None:
    """Close ``sock`` after ending its connection for every copy of its descriptor.

    close() alone ends a connection only when no other process holds a copy of the descriptor,
    and a process that forks while the sender thread is inside close() (the descriptor is gone
    from the socket object before the system call returns, so the child's at-fork hook finds
    nothing to close) keeps one for its life: the daemon saw the parent connected after it was
    gone, could not exit idle, and `trackd daemon stop` waited for it. shutdown() acts on the
    connection itself: the daemon reads the end of the stream, as after a close.
    """
    with contextlib.suppress(OSError):  # never connected, or already closed
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class Transport:
    """A connected Unix socket to the daemon (non-blocking: every wait is a select here)."""

    def __init__(self, path: Path, *, timeout: float, interrupt: Interrupt | None = None) -> None:
        self.path = path
        self._interrupt = interrupt
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Known to the at-fork hook from now on: a child forked while this connects or shakes hands
        # closes its copy (see _close_copies_in_child).
        self._sock: socket.socket | None = sock
        _OPEN_TRANSPORTS.add(self)
        try:
            with map_socket_errors(path):
                connect(sock, str(path), timeout, give_up=interrupt.requested if interrupt is not None else None)
                sock.setblocking(False)
                check_listener(sock, path)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self._socket().fileno()

    def send(self, data: bytes | memoryview, *, timeout: float | None = None) -> None:
        """Send all of ``data``, waiting while the daemon is not reading, at most ``timeout`` seconds
        each time it reads nothing (None: the sender thread's interrupt decides).

        Raises DaemonUnavailable when the interrupt gives the daemon up or the daemon read nothing
        for ``timeout``, possibly in the middle of a frame: the connection is then unusable, and
        the caller closes it.
        """
        sock = self._socket()
        view = memoryview(data)
        with map_socket_errors(self.path):
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    if not self._wait(writable=True, timeout=timeout):
                        raise DaemonUnavailable(f"The trackd daemon at {self.path} read nothing for {timeout:g} s.") from None

    def send_available(self, data: memoryview) -> int:
        """Send what the socket takes of ``data`` now, without waiting; returns how many bytes that was."""
        with map_socket_errors(self.path):
            try:
                return self._socket().send(data)
            except BlockingIOError:
                return 0

    def receive_available(self) -> bytes | None:
        """Bytes that have arrived, without waiting: None if there are none, b"" if the daemon closed."""
        with map_socket_errors(self.path):
            try:
                return self._socket().recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None

    def receive(self, timeout: float) -> bytes | None:
        """Wait up to ``timeout`` seconds for bytes: None if none came, b"" if the daemon closed."""
        if not self._wait(writable=False, timeout=timeout):
            return None
        return self.receive_available()

    def close(self) -> None:
        """End the connection, for every process that holds a copy of it (see end_connection)."""
        if self._sock is not None:
            end_connection(self._sock)
            self._sock = None
        _OPEN_TRANSPORTS.discard(self)

    def close_copy(self) -> None:
        """In a forked child: close this process's copy of the descriptor only; the parent's
        connection goes on (a shutdown here would end it for the parent too)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        _OPEN_TRANSPORTS.discard(self)

    def _wait(self, *, writable: bool, timeout: float | None) -> bool:
        """Wait until the socket is readable (or writable); False once ``timeout`` passes first."""
        fd = self._socket().fileno()
        # poll, not select: a training process may hold more than select's 1024 descriptors.
        poller = select.poll()
        poller.register(fd, select.POLLOUT if writable else select.POLLIN)
        if self._interrupt is not None:
            poller.register(self._interrupt.wake_fd, select.POLLIN)
            self._interrupt.check(self.path)  # asked before this wait began: its poke may be gone
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with map_socket_errors(self.path):
                ready = [ready_fd for ready_fd, _ in poller.poll(None if remaining is None else remaining * 1000)]
            if fd in ready:  # readable, writable, or closed: the next recv or send says which
                return True
            if ready:  # only the wake-up pipe
                assert self._interrupt is not None
                self._interrupt.woken(self.path)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise DaemonUnavailable(f"The connection to the trackd daemon at {self.path} is closed.")
        return self._sock


# Every Transport not closed: a forked child closes its copies of them all (the child's only thread
# is the one that forked, which holds none of them at that moment).
_OPEN_TRANSPORTS: weakref.WeakSet[Transport] = weakref.WeakSet()


def _close_copies_in_child() -> None:
    """A forked child never uses its parent's connections: close its copies of them.

    The sender's own is closed by its at-fork hook too, but one the sender thread was still
    opening (connect, handshake) was in no sender yet: the child kept it for its life, and the
    daemon saw the parent connected after the parent was killed.
    """
    for transport in list(_OPEN_TRANSPORTS):
        transport.close_copy()


os.register_at_fork(after_in_child=_close_copies_in_child)


def check_listener(sock: socket.socket, path: Path) -> None:
    """Refuse a socket another user listens on, before a byte is sent: DaemonRefused (lasting).

    The daemon refuses clients of other uids; this is the other direction. Without it, another
    user who created the socket's folder first (``/tmp/trackd-<uid>/``, the default without
    ``$XDG_RUNTIME_DIR``) received every Hello, param, metric and inline artifact, and answered
    with acks: flush() reported success and the store stayed empty.
    """
    uid = peer_uid(sock)
    if uid is None or uid == os.getuid():
        return
    problem = private_directory_problem(path.parent) if path.parent.is_dir() else None
    raise DaemonRefused(ErrorReply(request_id=0, code=ErrorCode.FORBIDDEN, message=(
        f"the process listening on {path} runs as uid {uid}, not as this user (uid {os.getuid()}), so "
        f"trackd sends it nothing: it is not this user's daemon.{' ' + problem if problem else ''} Set "
        f"{SOCKET_ENV} to a socket in a folder only you can write (mode 700; trackd creates it), or set "
        "XDG_RUNTIME_DIR."
    )), path)


def handshake(
    path: Path, hello: Hello, *, timeout: float, interrupt: Interrupt | None = None,
    owned: Callable[[], OwnedRuns | None] | None = None, ahead: Callable[[Connection], bytes | None] | None = None,
    keep_waiting: Callable[[], bool] | None = None,
) -> tuple[Transport, Connection, Welcome]:
    """Connect, send ``hello`` and wait for the daemon's Welcome; raises DaemonUnavailable.

    ``owned`` says, while the daemon has not answered, which runs to tell it before the Welcome
    (``Will.ahead_news``), and ``ahead`` gives the frames of batches to send before it, encoded
    by the connection it is passed (the sender's, on a connection with nothing to resend): both
    asked after the Hello and every WILL_CHECK_INTERVAL of the wait, and sent as far as the socket
    takes them without waiting (see _send_ahead); what it has not taken when the Welcome comes
    goes first then.
    ``keep_waiting``: asked each time ``timeout`` passes without a Welcome on a connection that
    is still open; True waits another ``timeout`` on the same connection. A daemon that is stopped
    (SIGSTOP) accepts connections into its listen queue and answers them all when it resumes:
    each attempt given up and made again left one more dead connection there for it to serve.
    """
    transport = Transport(path, timeout=min(timeout, 1.0), interrupt=interrupt)
    protocol = Connection(Role.CLIENT)
    polled = owned is not None or ahead is not None
    unsent = memoryview(b"")  # the end of the frames sent ahead that the socket has not taken yet
    try:
        transport.send(protocol.send(hello))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline or (keep_waiting is not None and keep_waiting()):
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + timeout
            event = protocol.next_event()
            if event is NEED_DATA:
                if polled:
                    try:
                        unsent = _send_ahead(transport, protocol, unsent, owned, ahead)
                    except DaemonUnavailable:
                        # A daemon that refused this client (an older one, after an upgrade) closed
                        # the connection as these frames went out: its refusal waits unread. A process
                        # with runs to tell (a worker of a trackd parent) said "no daemon answers".
                        _read_refusal(transport, protocol, path)
                        raise
                wait = max(deadline - time.monotonic(), 0.01)
                data = transport.receive(min(wait, WILL_CHECK_INTERVAL) if polled else wait)
                if data is not None:
                    protocol.receive_data(data)
                continue
            if isinstance(event, Welcome):
                # The daemon reads now: the rest of a frame cut by a full socket goes before anything
                # else on the connection (a wait the sender's interrupt can cut short, as any send).
                transport.send(unsent)
                return transport, protocol, event
            if isinstance(event, ErrorReply):
                raise DaemonRefused(_older_daemon_words(event), path)
            raise DaemonUnavailable(f"The trackd daemon closed the connection during the handshake ({event!r}).")
        raise HandshakeUnanswered(f"The trackd daemon at {path} did not answer the handshake within {timeout:g} s.")
    except BaseException:
        transport.close()
        raise


def _send_ahead(
    transport: Transport, protocol: Connection, unsent: memoryview,
    owned: Callable[[], OwnedRuns | None] | None, ahead: Callable[[Connection], bytes | None] | None,
) -> memoryview:
    """Send, before the Welcome, ``unsent`` and then the owned runs and batches there are, as far as
    the socket takes them without waiting; returns what it has not taken (frames are never interleaved).

    Without waiting: a daemon that is stopped reads nothing, and a send that waited for it would
    hold up the wait for its Welcome (and, bounded, cut a frame and end the attempt). What the
    socket took waits in the kernel: a process killed now has it written when the daemon resumes.
    """
    while True:
        if unsent:
            unsent = unsent[transport.send_available(unsent):]
            if unsent:
                return unsent  # the socket is full: the rest goes as the daemon reads, or after its Welcome
        news = owned() if owned is not None else None
        frames = protocol.send(news) if news is not None else b""
        batches = ahead(protocol) if ahead is not None else None
        if batches:
            frames += batches
        if not frames:
            return unsent
        unsent = memoryview(frames)


def _read_refusal(transport: Transport, protocol: Connection, path: Path) -> None:
    """Raise DaemonRefused if the daemon's refusal has arrived on ``transport`` (nothing otherwise)."""
    with contextlib.suppress(DaemonUnavailable, RemoteProtocolError):
        while (data := transport.receive_available()):
            protocol.receive_data(data)
    with contextlib.suppress(RemoteProtocolError):
        while (event := protocol.next_event()) is not NEED_DATA:
            if isinstance(event, ErrorReply):
                raise DaemonRefused(_older_daemon_words(event), path)


def make_hello(client_id: str, store_root: str, artifact_root: str | None = None) -> Hello:
    """The Hello this process sends: protocol version, who it is, which store it writes and in
    which form the store's new experiments name their artifact location."""
    return Hello(
        protocol_version=PROTOCOL_VERSION, client_id=client_id, pid=os.getpid(),
        host=socket.gethostname(), store_root=store_root, artifact_root=artifact_root,
    )


def _older_daemon_words(reply: ErrorReply) -> ErrorReply:
    """``reply``, or, when a daemon could not read this client's Hello for its number of fields,
    the version mismatch that refusal stands for.

    A daemon of an older protocol (left running by an upgrade) counted the Hello's fields before
    it read their version: every client of protocol 7 was refused "A Hello frame has 6 fields;
    expected 5", which was taken for a passing refusal (each exit waited for it) and said nothing
    of restarting the daemon. Daemons since read a newer Hello's version first.
    """
    if reply.code != ErrorCode.BAD_FRAME or not reply.message.startswith("A Hello frame has "):
        return reply
    return ErrorReply(request_id=reply.request_id, code=ErrorCode.VERSION_MISMATCH, message=(
        f"It runs an older trackd, which could not read this client's Hello (protocol version {PROTOCOL_VERSION}): "
        f"{reply.message.rstrip('.')}. Restart the daemon with the client's trackd version (trackd daemon stop)."
    ))
