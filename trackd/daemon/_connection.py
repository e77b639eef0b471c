"""One client connection: read bytes, turn them into events, hand them on, write replies.

It knows nothing about msgpack or the store: ``trackd.protocol.Connection`` parses, the server's
batcher and writer thread do the work. How it ends is its base's (``_connection_end.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._peer import peer_closed, peer_pid
from .._words import counted
from ..errors import RemoteProtocolError, TrackdError
from ..protocol import (
    FRAME_HEADER_SIZE,
    MAX_FRAME_SIZE,
    NEED_DATA,
    OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    BadBatch,
    Batch,
    Connection,
    ConnectionClosed,
    CreateExperiment,
    Dropped,
    ErrorCode,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    GetExperiment,
    GetStatus,
    Hello,
    OwnedRuns,
    SpooledWill,
    Role,
    State,
    StatusReply,
    Welcome,
)
from ..store import check_artifact_root, validate_store_root
from . import _partial_frames
from ._budget import DecodeBudget
from ._connection_end import ConnectionEnd
from ._will_budget import listed
from ._wills import Will, watch

if TYPE_CHECKING:
    from ._server import Server
    from ._state import Session

logger = logging.getLogger("trackd.daemon")

READ_SIZE = 256 * 1024
# A peer before its Hello names it.
UNKNOWN_PEER = "unknown client"
# What one connection may make the daemon hold. The protocol refuses a header announcing more than
# MAX_FRAME_SIZE, so the partial frame buffered between reads never exceeds this; checked anyway,
# because a connection that held more would be a bug worth closing it for.
MAX_BUFFERED_BYTES = MAX_FRAME_SIZE + FRAME_HEADER_SIZE + READ_SIZE
# Replies the client has not read yet: past this the connection stops reading until it does, so a
# client that sends GetStatus in a loop and never reads cannot grow the daemon's write buffers.
MAX_UNREAD_REPLY_BYTES = 1024 * 1024
# Flush barriers waiting for their batches; a real client has one per thread calling flush().
MAX_PENDING_FLUSHES = 1024
# How long a refused connection may take to read its ErrorReply and go.
REFUSAL_LINGER = 1.0
# A client sends its Hello as it connects; a connection silent this long after it took a slot (of
# max_connections) is closed: a process stopped or hung right after connect() held it for ever, and
# as many such connections as the limit locked every client out.
HELLO_TIMEOUT = 30.0
# A connection paused for its decode budget looks again this often whether anyone still waits, so
# it resumes soon after its neighbours' flushes are answered rather than at the end of its debt.
BUDGET_RECHECK = 0.002


class ClientConnection(ConnectionEnd):
    """Drives one client's socket for as long as it is open."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.protocol = Connection(Role.DAEMON)
        self.session: Session | None = None
        # Its session's events_received as this connection took it over: what earlier connections
        # of that client (or deliveries of its spool) sent, not this one's (_parting).
        self._received_before = 0
        # The runs to fail if the peer's process exits without ending them (_wills.py); None for a
        # peer the daemon cannot watch, or a control connection.
        self.will: Will | None = None
        self._unwatched = False
        self.peer = UNKNOWN_PEER
        self.budget = DecodeBudget.full(server.config.max_events_per_second, time.monotonic())
        self._throttled = False
        # Shutdown: the peer's process has exited, so the connection is read to its end (see
        # stop_reading); True once it was.
        self._read_to_end = False
        self.drained = False
        # Closed for the daemon's budget of partial frames (drop_partial_frame).
        self._dropped = False
        self._replied = asyncio.Event()
        writer.transport.set_write_buffer_limits(high=MAX_UNREAD_REPLY_BYTES)

    async def run(self) -> None:
        """Serve the connection until the client closes it, breaks the protocol, or the daemon stops."""
        # A timer, not a timeout on each read: from connect (a Hello sent a byte at a time does not
        # renew it), and the read path stays as it is.
        overdue = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._no_hello)
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data and not self.protocol.buffered_bytes and not self.server.stopping:
                    # The end of the client's stream, at a frame boundary: one that only shut its
                    # sending side down waits for its replies (its end is read after them, which
                    # closes the connection; or during a shutdown, below).
                    await self.answer_before_closing()
                if not data and self.server.stopping:
                    # stop_reading() ended the stream: the connection stays open for the last acks.
                    # Or an exited process's stream ended: what it sent is all in the batcher. (A
                    # live one that only stopped sending, waiting for its replies, gets them too.)
                    self.drained = self._read_to_end and self._peer_exited()
                    return
                if self._dropped:
                    return  # drop_partial_frame() closed it; said so there
                self.server.state.counters.bytes_received += len(data)
                self.protocol.receive_data(data)
                decoded = 0
                frames = 0
                while (event := self.protocol.next_event()) is not NEED_DATA:
                    frames += 1
                    if isinstance(event, ConnectionClosed):
                        return
                    assert isinstance(event, Event)
                    await self._handle(event)
                    if self.protocol.state is State.CLOSED:
                        return
                    if isinstance(event, Batch):
                        # After each batch, not each read (256 KiB, thousands of records): a
                        # neighbour's flush then waits for one frame's decoding at most.
                        await self._within_budget(decoded + event.events)
                        decoded = 0
                        await asyncio.sleep(0)
                    else:
                        decoded += 1
                if self.protocol.buffered_bytes > MAX_BUFFERED_BYTES:
                    raise RemoteProtocolError(
                        f"The connection holds {self.protocol.buffered_bytes} undecoded bytes; at most "
                        f"{MAX_BUFFERED_BYTES} are kept per connection."
                    )
                if self._hold_partial_frame(new_frame=frames > 0):
                    return
                # Waits only while the client leaves more than MAX_UNREAD_REPLY_BYTES of replies unread.
                # Not once the peer is gone (it raises then): what it sent before is read on (_streams.py).
                if not self.writer.is_closing():
                    await self.writer.drain()
                await self._within_budget(decoded)
                # reader.read() returns at once while the client keeps the socket full, so without
                # this a flooding client would never let the loop run anyone else: one read's
                # frames, then the other connections get their turn.
                await asyncio.sleep(0)
        except RemoteProtocolError as exc:
            if self.server.stopping:
                return  # stop_reading() cut a frame in half; its client resends it
            if self.protocol.closed_mid_frame and self.session is not None:
                # A client (it said Hello) was killed, or gave a stalled daemon up, while sending:
                # what it had not finished sending it sends again or spools. Not a protocol error.
                logger.info("%s closed its connection in the middle of a frame", self.peer)
            elif self.protocol.closed_mid_hello:
                # Nor is a client killed as it sent its Hello: a storm of connections closed so was
                # counted and logged as protocol errors, one each. Said once per process.
                if self._first_of_kind("closed mid-Hello"):
                    logger.info("%s closed in the middle of its Hello (logged once per process)", self._who())
            else:
                # One line per process and kind: a process sending garbage on 1,000 connections
                # logged 1,000 warnings. Status counts every one.
                self.server.state.counters.protocol_errors += 1
                if self._first_of_kind(ErrorCode.BAD_FRAME):
                    logger.warning(
                        "%s broke the protocol and was disconnected: %s (logged once per process; status counts "
                        "protocol errors)", self._who(), exc,
                    )
            self._name_refused(exc)
            self.send(ErrorReply(request_id=0, code=ErrorCode.BAD_FRAME, message=str(exc)))
        except (ConnectionError, OSError) as exc:
            if not self._dropped:  # drop_partial_frame() closed it, and said so
                logger.info("%s connection failed: %s", self.peer, exc)
        except Exception:
            # A bug in serving one client ends that connection, in the daemon's log, never the
            # daemon (asyncio would print it to a stderr nobody reads, and a full pipe blocks).
            logger.exception("Internal error while serving %s; closing its connection", self.peer)
        except asyncio.CancelledError:
            if self._read_to_end:
                logger.error("Shutdown: %s exited, and its connection was not read to its end in time: what it "
                             "had sent last is lost, and its will is left to the next daemon", self.peer)
            raise
        finally:
            overdue.cancel()
            # During shutdown the server closes connections itself, after sending the last acks;
            # one read to its end is closed now, so its will waits for what it sent to be written.
            if not self.server.stopping or self.drained:
                self.close()

    def _hold_partial_frame(self, *, new_frame: bool) -> bool:
        """Count what this connection holds of a partial frame in the daemon's budget, and close the
        connections whose partial frames are the oldest while it is over; True if this one was."""
        partial = self.server.state.partial_frames
        partial.update(self, self.protocol.buffered_bytes, new_frame=new_frame, now=time.monotonic())
        while partial.over_budget():
            oldest, held, since = partial.oldest()
            oldest.drop_partial_frame(held, since, partial.total)
        return self._dropped

    def drop_partial_frame(self, held: int, since: float, total: int) -> None:
        """Close this connection, which holds the oldest partial frame (``held`` bytes of it, begun
        at ``since``) while connections hold ``total`` bytes of them, over the daemon's budget."""
        self._dropped = True
        self.server.state.partial_frames.forget(self)
        self.server.state.count_error("Connections closed holding the oldest partial frame past the daemon's budget")
        if self._first_of_kind("partial frame"):
            logger.warning(
                "%s was disconnected: it held %s of a frame not whole for %.1f s, the oldest such frame while "
                "connections held %s of them, over the daemon's budget of %s (a client sends what was not "
                "acknowledged again; logged once per process, status counts them)",
                self._who(), counted(held, "byte", grouped=True), time.monotonic() - since, counted(total, "byte", grouped=True),
                counted(_partial_frames.MAX_PARTIAL_FRAME_BYTES, "byte", grouped=True),
            )
        self.writer.transport.abort()  # its read returns end of stream

    def _name_refused(self, exc: RemoteProtocolError) -> None:
        """Tell the client which batch or request of its own it must not send again, when the frame says.

        A client checks its records as this daemon does, unless one of them is of another trackd
        (the same protocol version, a field checked more strictly): unnamed, its batch went again
        on every connection, flush() waited out its timeout, and the batch was spooled and
        refused again at every delivery.
        """
        if exc.batch_seq:
            self.send(BadBatch(seq=exc.batch_seq, message=str(exc)))
        elif exc.request_id:
            self.send(ErrorReply(request_id=exc.request_id, code=ErrorCode.BAD_FRAME, message=str(exc)))

    def _no_hello(self) -> None:
        if self.protocol.state is State.AWAIT_HELLO and not self.server.stopping:
            self.server.state.counters.protocol_errors += 1
            if self._first_of_kind("no Hello"):
                logger.warning(
                    "%s sent no Hello within %g s of connecting and was closed (logged once per process; status "
                    "counts protocol errors)", self._who().capitalize(), HELLO_TIMEOUT,
                )
            self.writer.transport.abort()  # its read returns end of stream

    def _kernel_pid(self) -> int | None:
        """The peer's pid as the kernel says (0: in another pid namespace; None: it cannot say)."""
        sock = self.writer.get_extra_info("socket")
        try:
            return None if sock is None else peer_pid(sock)
        except OSError:
            return None

    def _who(self) -> str:
        """The peer in a log line: as its Hello named it, else by the kernel's pid."""
        if self.peer != UNKNOWN_PEER:
            return self.peer
        pid = self._kernel_pid()
        return f"a connection of pid {pid}" if pid else "a connection of a process the kernel does not name"

    def _first_of_kind(self, kind: str) -> bool:
        """True the first time the peer's process (the kernel's pid) gets a line of ``kind``, as
        for refusals (ServerState.first_refusal); always where the kernel does not say its pid."""
        pid = self._kernel_pid()
        return not pid or self.server.state.first_refusal(f"pid {pid}: {kind}")

    async def _within_budget(self, decoded: int) -> None:
        """Stop reading while this connection is over its decode budget and another client waits on a flush.

        Not reading is the back-pressure: the socket fills and the client's sender waits, nothing
        is dropped. With nobody waiting the debt is forgiven: the limit exists so that one
        connection cannot take the loop, and the GIL it shares with the writer thread, from a
        client blocked in flush(); slowing it otherwise would only leave the daemon idle, and the
        backlog bound already stops it decoding far ahead of the writer.
        """
        budget = self.budget
        now = time.monotonic()
        budget.spend(decoded, now)
        paused_at = 0.0
        while (delay := budget.delay(now)) > 0 and not self.server.stopping:
            if not self.server.others_waiting(self):
                budget.forgive()
                break
            if not paused_at:
                paused_at = now
                self._count_throttle()
            await asyncio.sleep(min(delay, BUDGET_RECHECK))
            now = time.monotonic()
        if paused_at and self.session is not None:
            self.session.throttled_s += now - paused_at

    def _count_throttle(self) -> None:
        self.server.state.counters.throttled += 1
        if self.session is not None:
            self.session.throttled += 1
        if not self._throttled:
            self._throttled = True
            logger.info(
                "%s decodes more than its budget of %d events/s while other clients wait: pausing its reads "
                "when over it (status counts the pauses)", self.peer, self.server.config.max_events_per_second,
            )

    def send(self, event: Event) -> None:
        """Queue ``event`` for the client; a connection that is going away drops it quietly."""
        if self.writer.is_closing() or self._peer_fd(peer_closed):
            # Nobody reads it, and a write to a closed peer fails (EPIPE), on which the transport
            # closes. What the peer sent before it died is still read then (_streams.py); this
            # only spares the failed write.
            return
        try:
            self.writer.write(self.protocol.send(event))
        except TrackdError as exc:
            logger.error("Could not send %s to %s: %s", type(event).__name__, self.peer, exc)
        self._replied.set()

    def replies_unread(self) -> bool:
        """Whether the client leaves more than MAX_UNREAD_REPLY_BYTES of replies unread (past the kernel's buffer)."""
        return self.writer.transport.get_write_buffer_size() > MAX_UNREAD_REPLY_BYTES

    async def refuse(self, code: str, message: str, *, pid: int | None = None, log: bool = True) -> None:
        """Turn a new connection away before reading it: say why in one ErrorReply, log it (if ``log``), close.

        ``pid``: the peer's, as the kernel says; the log line names it (it named nobody, so a
        refusal could not be told from the next client's connect).
        """
        if log:
            logger.warning(
                "Refused a connection (%s) from %s: %s (logged once per process; status counts the refusals)",
                code, f"pid {pid}" if pid else "a process the kernel does not name", message,
            )
        # CLOSED is the one state in which the daemon may send an ErrorReply without a Hello first.
        self.protocol.state = State.CLOSED
        self.send(ErrorReply(request_id=0, code=code, message=message))
        # Closing a Unix socket with the client's Hello unread resets it (ECONNRESET), and the
        # client would never read why. So end our side and discard its bytes, briefly and boundedly.
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            await asyncio.wait_for(self._discard_input(), REFUSAL_LINGER)
        self.close()

    def say_shutting_down(self) -> None:
        """Shutdown: tell the client, wherever its handshake is, that this daemon is going away."""
        if self.protocol.state is State.AWAIT_HELLO:
            # Connected just before shutdown, its Hello not read yet: CLOSED is the one state in
            # which an ErrorReply may go before a Hello (as in refuse()). The protocol used to
            # refuse to send it, and the daemon logged an ERROR for a connection that did nothing wrong.
            self.protocol.state = State.CLOSED
        self.send(ErrorReply(request_id=0, code=ErrorCode.SHUTTING_DOWN, message="The trackd daemon is shutting down."))

    async def _discard_input(self) -> None:
        discarded = 0
        while discarded < READ_SIZE and (data := await self.reader.read(READ_SIZE)):
            discarded += len(data)

    def close(self) -> None:
        """Close the socket and let the session wait for a reconnect."""
        if self.session is not None and self.session.connection is self:
            self.session.connection = None
            self.session.disconnected_at = time.monotonic()
            if self.session.store_root:  # control connections (status queries) come and go quietly
                logger.info("%s disconnected: %s", self.peer, self._parting(self.session))
        # Once: run() closes again after the server closed a connection its client replaced.
        will, self.will = self.will, None
        self.server.wills.left(will)
        self.server.state.connections.discard(self)
        self.server.state.partial_frames.forget(self)
        if not self.writer.is_closing():
            self.writer.close()

    async def _handle(self, event: Event) -> None:
        if isinstance(event, Batch):
            await self._on_batch(event)
        elif isinstance(event, Flush):
            self._require_store(event)
            session = self._session()
            # A barrier sent again (after a reconnect) takes the place of the one still waiting, so
            # it counts once; it waits for what was received by now, and is answered at once if
            # that is written. Ignored, a barrier whose batches were written while no connection
            # could be told was never answered: `trackd sync` of an exited process's spool, whose
            # barrier 1 met the process's own, waited out its timeout at every try.
            session.flushes = [waiting for waiting in session.flushes if waiting[0] != event.request_id]
            if len(session.flushes) >= MAX_PENDING_FLUSHES:
                # This barrier is refused, not the connection: closed, the client sent every
                # barrier again on the next connection, was refused again, and so on for ever.
                self.send(ErrorReply(
                    request_id=event.request_id, code=ErrorCode.REQUEST_FAILED,
                    message=f"The daemon holds {len(session.flushes)} flush barriers of this client; at most "
                    f"{MAX_PENDING_FLUSHES} may wait at once, so this flush was not waited for (its events "
                    "are written all the same).",
                ))
                return
            self.server.flush(session, event.request_id)
        elif isinstance(event, Hello):
            if event.store_root and (refusal := self.server.over_limit(self)) is not None:
                await self.server.turn_away(self, *refusal)  # a data client over --max-connections
            else:
                self._on_hello(event)
        elif isinstance(event, GetExperiment):
            root = self._require_store(event)
            artifact_root = self._session().artifact_root
            await self._reply(
                event.request_id,
                lambda: self.server.applier.get_experiment(root, event.name, create=event.create, artifact_root=artifact_root),
            )
        elif isinstance(event, CreateExperiment):
            root = self._require_store(event)
            artifact_root = self._session().artifact_root
            await self._reply(
                event.request_id,
                lambda: self.server.applier.create_experiment(
                    root, event.name, event.artifact_location, event.tags, artifact_root
                ),
            )
        elif isinstance(event, Dropped):
            session = self._session()
            if session.dropped == 0 and event.total > 0:
                logger.warning("%s is dropping events: its buffer is full (TRACKD_ON_FULL=drop); status counts them", self.peer)
            session.dropped = max(session.dropped, event.total)
        elif isinstance(event, GetStatus):
            self.send(StatusReply(request_id=event.request_id, status=self.server.status()))
        elif isinstance(event, OwnedRuns):
            self._require_store(event)
            if self.will is not None:
                self.server.wills.update(self.will, event)
            elif event.run_ids and not self._unwatched:
                self._unwatched = True  # said once per connection
                logger.info("%s owns runs, but the kernel does not say its pid: they are not failed if it is killed", self.peer)
        elif isinstance(event, SpooledWill):
            self._require_store(event)
            # Watched only where this peer's pid is (its pid namespace is the spool writer's).
            self.server.wills.spooled(self._session(), event, watched=self.will is not None)

    def _on_hello(self, hello: Hello) -> None:
        self.peer = f"client pid {hello.pid}@{hello.host}"
        if self._given_up_unanswered():
            # A client gave this attempt up before the daemon read its Hello (it was stopped, or too
            # busy to answer in time), closed it and sent nothing else: a Welcome would go to nobody.
            # A daemon resumed after a SIGSTOP found one per attempt in its listen queue, and logged
            # "connected" and "disconnected" for each; attached, it took the client's session from
            # the connection that had replaced it. Counted into one line a burst instead.
            self.server.note_unanswered_hello()
            self.protocol.state = State.CLOSED
            return
        if not OLDEST_PROTOCOL_VERSION <= hello.protocol_version <= PROTOCOL_VERSION:
            self._refuse(
                ErrorCode.VERSION_MISMATCH,
                f"This daemon speaks trackd protocol {_versions()}, the client speaks "
                f"version {hello.protocol_version}; restart the daemon with the client's trackd "
                "version (trackd daemon stop).",
            )
            return
        root = hello.store_root
        artifact_root = None
        if root:
            try:
                root = validate_store_root(root)
                artifact_root = check_artifact_root(root, hello.artifact_root)
            except TrackdError as exc:
                self._refuse(ErrorCode.REQUEST_FAILED, str(exc))
                return
        if self.server.stopping:
            self._refuse(ErrorCode.SHUTTING_DOWN, "The trackd daemon is shutting down; reconnect to its successor.")
            return
        self.session = self.server.attach(self, hello, root, artifact_root)
        self._received_before = self.session.events_received
        if root:
            self.will = watch(self.session, self.writer.get_extra_info("socket"))
            # After attach, which closed the connection this one replaces (leaving its will).
            self.server.wills.reconnected(hello.client_id, self.will)
        # The version this connection speaks: the client's (an older one's frames are a subset).
        self.send(Welcome(protocol_version=hello.protocol_version, daemon_pid=self.server.pid, resume_seq=self.session.applied_seq))
        if root:
            logger.info("%s connected (client %s, store %s)", self.peer, hello.client_id, root)

    async def _on_batch(self, batch: Batch) -> None:
        session = self._session()
        self._require_store(batch)
        await self.server.accept_batch(session, batch, self.protocol.last_frame_size)

    async def _reply(self, request_id: int, work: Callable[[], str | None]) -> None:
        try:
            experiment_id = await self.server.run_in_writer(work)
        except TrackdError as exc:
            self.send(ErrorReply(request_id=request_id, code=ErrorCode.REQUEST_FAILED, message=str(exc)))
            return
        except OSError as exc:
            self.send(ErrorReply(request_id=request_id, code=ErrorCode.REQUEST_FAILED, message=f"The store could not be written: {exc}."))
            return
        self.send(ExperimentReply(request_id=request_id, experiment_id=experiment_id))

    def _refuse(self, code: str, message: str) -> None:
        # A client refused for good (another protocol version: a job still running after an
        # upgrade) tries again every 2 s for as long as it runs: logged at every attempt, one such
        # job added ~40,000 lines a day to the log. Status counts every refusal.
        if self.server.state.note_refusal(self.peer, message):
            logger.warning("Refused %s: %s (logged once; status counts the refusals)", self.peer, message)
        self.send(ErrorReply(request_id=0, code=code, message=message))
        self.protocol.state = State.CLOSED

    def _parting(self, session: Session) -> str:
        """What a client leaves as its connection ends, for the one line that says so.

        A client that ended its runs and one killed with runs open both said only "disconnected";
        which it was showed only later, in the line failing its runs (or never, for a process that
        was still running).
        """
        waiting = session.backlog_events
        # A `trackd sync` delivering a spool said "7 events received from it" of the 3 it sent: the
        # total of the client since its first connection. Its own, and the client's beside them.
        own = session.events_received - self._received_before
        said = f"{counted(own, 'event')} received from it" + (
            f" on this connection ({session.events_received} from its client in all), " if self._received_before else ", "
        ) + (
            f"{waiting} waiting to be written" if waiting > 0 else "none waiting to be written"
        )
        runs = self.will.run_ids if self.will is not None else ()
        left = self.server.wills.left_to_next
        if runs:
            # "Marked FAILED" alone was said also of a run whose creation never arrived (the process
            # was killed between telling it and sending it): nothing was failed, the store has no such run.
            said += f"; it had not ended {counted(len(runs), 'run')} ({listed(runs)})" + (
                f": marked FAILED once its process has exited if {'it is' if len(runs) == 1 else 'they are'} "
                "RUNNING in the store then, unless it reconnects" if left is None
                # A stopping daemon's, after its wills are settled: it fails nothing more (said above).
                else ": its will is left to the next daemon" if self.will in left else ""
            )
        return said

    def _session(self) -> Session:
        assert self.session is not None  # the protocol allows nothing before Hello
        return self.session

    def _require_store(self, event: Event) -> str:
        root = self._session().store_root
        if not root:
            raise RemoteProtocolError(f"{type(event).__name__} needs a store; this connection's Hello named none.")
        return root


def _versions() -> str:
    """The protocol versions this daemon serves, in words: "version 7", or "versions 6 to 7"."""
    if OLDEST_PROTOCOL_VERSION == PROTOCOL_VERSION:
        return f"version {PROTOCOL_VERSION}"
    return f"versions {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
