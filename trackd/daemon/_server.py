"""The daemon's lifecycle: startup, serve until told to stop, shutdown in named phases.

Also who is admitted, the status reply and the once-a-second housekeeping; how batches are taken
in and written is the write path's (``_write_path.WritePath``, a base of ``Server``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from .. import __version__
from .._paths import ensure_private_directory
from .._words import counted
from ..protocol import Ack, ErrorCode, Hello
from ._applier import Applier
from ._batcher import Batcher
from ._config import (
    CONTROL_CONNECTIONS, MAX_DEFAULT_OPEN_FILES, MIN_OPEN_FILES, OWN_FILES_RESERVE, REFUSAL_RESERVE, DaemonConfig,
    fitted_connections,
)
from ._connection import ClientConnection
from ._copies import COPY_STOP_SECONDS, Copies
from ._files import (
    AlreadyRunning, open_journal, remove_daemon_files, remove_stale_socket, take_lock, unclean_exit, write_pid_file,
)
from ._identities import Identities
from ._listener import Listener
from ._loop import loop_factory
from ._outages import Outages
from .._peer import credentials_supported, peer_pid, peer_uid
from ._state import ServerState, Session
from ._wills import Wills
from ._write_path import FLUSH_RECENCY, WritePath

logger = logging.getLogger("trackd.daemon")

# Counters in a StatusReply travel as msgpack integers, which stop at uint64; sums are capped here.
MAX_STATUS_COUNT = 2**63 - 1
# Metric files no write used for this long (to twice as long) are closed: see close_idle_files.
IDLE_FILE_SECONDS = 10.0
# While a client's batches wait for an artifact copy, it is told this often that the daemon is at
# work for it (see _copy_heartbeats): well inside any TRACKD_CONNECT_TIMEOUT worth setting.
COPY_HEARTBEAT_INTERVAL = 0.25
# Connections closed before their Hello was answered come in bursts (a daemon resumed after a
# SIGSTOP serves its whole listen queue at once): one line this long after the first says how many.
UNANSWERED_HELLO_SUMMARY_DELAY = 1.0


class Server(WritePath):
    """One trackd daemon: a Unix socket, its client connections, a batcher and a writer thread."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.pid = os.getpid()
        self.state = ServerState()
        self.batcher = Batcher(max_records=config.max_records, max_bytes=config.max_bytes, max_age=config.max_age)
        self.applier = Applier(max_open_files=config.max_open_files or MIN_OPEN_FILES)
        # Data connections served at once: --max-connections, lowered at start to fit the file limit.
        self.max_connections = config.max_connections
        self.stopping = False
        self.loop_name = "asyncio"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackd-writer")
        self._should_exit = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._writing = self._writing_bytes = 0  # events, and their estimated bytes, of the write under way
        # Events shutdown could not write in time (the exit report and code say so).
        self.unwritten_at_exit = 0
        # Set on the loop when a flush barrier arrives, read by the writer thread between turns.
        self._flush_arrived = False
        self._last_flush_at = float("-inf")
        self._lock_file: IO[bytes] | None = None
        self._listener: Listener | None = None
        self._sigint_count = 0
        self._idle_since = time.monotonic()
        self._unanswered_hellos = 0  # since the last line that said so (note_unanswered_hello)
        # Stores refusing writes (disk full...), each holding its own batches back.
        self.outages = Outages()
        # Clients whose batches wait for artifacts to be copied (off the writer thread).
        self.copies = Copies(self._copied)
        self.wills = Wills()  # runs to fail once their process exits without ending them
        self.identities = Identities()  # what status shows of each client's process (/proc)
        self.unclean_exit_pid: int | None = None  # the last daemon's, if it ended without a clean exit

    def run(self) -> None:
        """Run the daemon on its chosen event loop until it is told to stop."""
        self.loop_name, factory = loop_factory(self.config.loop)
        loop = factory()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.serve())
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    async def serve(self) -> None:
        await self.startup()
        await self._should_exit.wait()
        await self.shutdown()

    async def startup(self) -> None:
        paths = self.config.paths
        ensure_private_directory(paths.directory)
        self._lock_file = take_lock(paths)
        self.unclean_exit_pid = unclean_exit(paths)
        if self.unclean_exit_pid is not None:
            logger.warning(
                "The previous daemon pid %d ended without a clean exit (killed by kill -9 or the OOM killer, or "
                "crashed): it left its pid file %s and no exit report; its clients resend what it had not "
                "acknowledged, and its log's last lines above may say more", self.unclean_exit_pid, paths.pid,
            )
        remove_stale_socket(paths.socket)
        # Undo a write that a previous daemon did not finish, and learn what it did finish.
        journal = open_journal(paths)
        # What the last daemon wrote per client: a client or a spool resuming after it.
        for client_id, seq in journal.recovered_seqs.items():
            self.state.retire(client_id, seq)
        self.applier = Applier(max_open_files=self._open_files_budget(), journal=journal)
        self.applier.other_owners = self.wills.other_owners  # for shared ends (_applier.py)
        self.wills.restore(paths.wills, paths.wills_journal)  # what the last daemon to stop could not apply yet
        # Both before the socket answers: a SIGTERM sent as soon as a client reaches the daemon must
        # stop it gracefully (serve() then finds the exit flag set), and whoever reaches it must
        # find its pid (``trackd daemon stop``).
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.handle_exit, signum)
        write_pid_file(paths.pid, self.pid)
        self._listener = Listener(paths, self._lock_file, self._on_connect)
        await self._listener.start()
        self._spawn(self._listener.watch(self._stop_for))
        self._spawn(self._write_loop())
        self._spawn(self._housekeeping())
        self._spawn(self._copy_heartbeats())
        self._room.set()
        if not credentials_supported():
            logger.warning("This platform cannot report a peer's uid; only the socket's modes keep other users out")
        logger.info(
            "trackd %s daemon pid %d listening on %s (loop %s, writes of up to %s or after %.0f ms)",
            __version__, self.pid, paths.socket, self.loop_name, counted(self.config.max_records, "event"), self.config.max_age * 1000,
        )

    def _open_files_budget(self) -> int:
        """Raise this process's file limit to its hard limit, fit the connections to it and size the
        metric-file cache from it."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass  # keep the soft limit we have
        self.max_connections = fitted_connections(self.config.max_connections, self.config.max_open_files, soft)
        if self.max_connections < self.config.max_connections:
            logger.warning(
                "Serving at most %s at once, not %d (--max-connections): the file limit (RLIMIT_NOFILE) is %d, and %d "
                "descriptors are kept for metric files, %d for the daemon's own files, %d for status requests and %d to "
                "refuse connections over the limit with a reply; raise the limit (ulimit -n) to serve more",
                counted(self.max_connections, "client connection"), self.config.max_connections, soft,
                min(self.config.max_open_files or MIN_OPEN_FILES, MIN_OPEN_FILES), OWN_FILES_RESERVE,
                CONTROL_CONNECTIONS, REFUSAL_RESERVE,
            )
        if self.config.max_open_files is not None:
            return self.config.max_open_files
        # Keep room for every client connection and the daemon's own files.
        reserved = self.max_connections + OWN_FILES_RESERVE + CONTROL_CONNECTIONS + REFUSAL_RESERVE
        budget = max(MIN_OPEN_FILES, min(MAX_DEFAULT_OPEN_FILES, soft - reserved))
        logger.info("Keeping up to %d metric files open (file limit %d)", budget, soft)
        return budget

    def handle_exit(self, signum: int) -> None:
        """Signal handler: ask for a graceful stop; a second SIGINT forces one."""
        if signum == signal.SIGINT:
            self._sigint_count += 1
            if self._sigint_count > 1:
                logger.warning("Second SIGINT: exiting now without writing %s", counted(self.batcher.pending_records, "pending event"))
                os._exit(1)
        logger.info("Received %s: shutting down gracefully", signal.Signals(signum).name)
        self._should_exit.set()

    def _stop_for(self, reason: str) -> None:
        """Stop gracefully, as on SIGTERM, for ``reason`` (the listener's: its socket path is not its own any more)."""
        logger.warning("%s", reason)
        self._should_exit.set()

    async def shutdown(self) -> None:
        self.stopping = True
        # Phase 1: accept no new connections.
        logger.info("Shutdown: closing the socket to new connections")
        if self._listener is not None:
            self._listener.close()
        # Phase 2: stop reading. Each connection finishes the frames it has already received, then
        # ends as at EOF; bytes still unread stay unacknowledged, so their clients resend them. An
        # exited process's connection cannot: it is read to its end, then closed (its will pending).
        readers = [task for task in self.state.tasks if task.get_name().startswith("trackd-client")]
        exited = sum(conn.stop_reading() for conn in list(self.state.connections))
        logger.info(
            "Shutdown: stopping %s (%d of exited processes, or done sending, read to their end)",
            counted(len(readers), "client reader"), exited,
        )
        if readers:
            _, stragglers = await asyncio.wait(readers, timeout=self.config.shutdown_timeout)
            for task in stragglers:
                task.cancel(msg="trackd daemon is shutting down: this connection did not finish in time")
        # Phase 3: write everything received, and acknowledge it.
        logger.info("Shutdown: writing %s", counted(self._backlog_records(), "pending event"))
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self._backlog_records() and time.monotonic() < deadline:
            self.batcher.request_write()
            self._wake.set()
            await asyncio.sleep(0.005)
        # Copies still under way stop at their next chunk (one stuck opening a file is left to
        # its thread, which does not keep the process alive), and their batches are not written.
        self.copies.stop()
        # What waits in the batcher, for a copy, is held for a refusing store, or is in a write still
        # running at the deadline (its events left the batcher; the cancelled loop would forget
        # them): never acknowledged, so resent.
        self.unwritten_at_exit = self._backlog_records()
        if self.unwritten_at_exit:
            logger.error(
                "Shutdown: %s could not be written in time; clients still running resend them",
                counted(self.unwritten_at_exit, "event"),
            )
        await self.wills.settle(self)  # the runs of processes that exited meanwhile: failed now, or never
        # Phase 4: tell every client, then close its connection; each will reconnect to a successor.
        logger.info("Shutdown: closing %s", counted(len(self.state.connections), "client connection"))
        for conn in list(self.state.connections):
            conn.say_shutting_down()
            conn.close()
        # Phase 5: stop background tasks, close the store files, remove the socket and pid file.
        for task in list(self.state.tasks):
            task.cancel(msg="trackd daemon is shutting down")
        await asyncio.gather(*self.state.tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.applier.close)
        self._executor.shutdown(wait=True)
        self.copies.join(COPY_STOP_SECONDS)
        self.copies.discard_all()
        remove_daemon_files(self.config.paths, self._lock_file, self._listener)
        self._lock_file = None
        counters = self.state.counters
        logger.info("Shutdown complete: %s received, %d written", counted(counters.records_received, "event"), counters.records_written)

    # -- what connections call ---------------------------------------------------------------

    def attach(self, conn: ClientConnection, hello: Hello, store_root: str, artifact_root: str | None = None) -> Session:
        """The session for ``hello.client_id``, now served by ``conn``; ``artifact_root``: checked."""
        session = self.state.sessions.get(hello.client_id)
        if session is None or session.store_root != store_root:
            session = Session(hello.client_id, hello.pid, hello.host, store_root)
            if store_root:
                self.state.sessions[hello.client_id] = session
                try:
                    # The kernel's pid, not the Hello's: _identities reads a process only when the two agree.
                    self.identities.identify(session, peer_pid(conn.writer.get_extra_info("socket")))
                except OSError:
                    pass  # closed already: nothing to name
                # A client (or its spool) back after its session was forgotten, or after a daemon
                # that died: what was written must not be written again.
                recovered = self.state.retired.pop(hello.client_id, 0)
                session.received_seq = session.applied_seq = recovered
        elif session.connection is not None and session.connection is not conn:
            # The client reconnected before we noticed its old socket die.
            session.connection.close()
        session.connection = conn
        session.disconnected_at = None
        session.artifact_root = artifact_root
        self.outages.reconnected(session)
        return session

    def status(self) -> dict[str, object]:
        """The counters ``trackd daemon status`` shows."""
        c = self.state.counters
        now = time.monotonic()
        received_rate, written_rate = self.state.rates(now)
        span = self.state.rate_span(now)
        clients = [session.status(span, now) for session in self.state.listed_sessions()]
        return {
            "pid": self.pid,
            "version": __version__,
            "socket": str(self.config.paths.socket),
            "loop": self.loop_name,
            "uptime_s": round(now - self.state.started_at, 3),
            "clients_connected": sum(1 for s in self.state.sessions.values() if s.connection is not None),
            "clients_known": len(self.state.sessions),
            # Data connections served at once, and the flag's value when the file limit lowered it.
            "max_connections": self.max_connections,
            "max_connections_given": self.config.max_connections,
            "unclean_exit_pid": self.unclean_exit_pid,  # the last daemon's, killed or crashed; None
            "log_file": self.config.log_file,  # None: it logs to its stderr
            "clients": clients,
            "records_received": c.records_received,
            "bytes_received": c.bytes_received,
            "records_written": c.records_written,
            "metric_points_written": c.metric_points_written,
            "receive_rate": round(received_rate, 1),
            "write_rate": round(written_rate, 1),
            "rate_span_s": round(span, 3),  # what those are over: RATE_WINDOW, or the daemon's age
            "backlog_records": self._backlog_records(),
            # Estimated bytes of those events, the write under way's too: without them a write held
            # up by its disk showed "69 events waiting to be written (0 bytes)". Connections stop
            # reading past max_backlog_bytes of what waits (not of what is being written).
            "backlog_bytes": self.batcher.pending_bytes + self._writing_bytes + self.outages.size + self.copies.size,
            "writes": c.writes,
            "items_rejected": c.items_rejected,
            "events_rejected": c.events_rejected,
            # Each client reports its own total (up to int64); their sum must still fit in one.
            "events_dropped_by_clients": min(sum(s.dropped for s in self.state.sessions.values()), MAX_STATUS_COUNT),
            "protocol_errors": c.protocol_errors,
            "connections_refused": c.connections_refused,
            "write_errors": c.write_errors,
            "throttled": c.throttled,
            # Artifacts sent by path being copied into the store, or queued for a copier thread.
            "copies_in_progress": self.copies.copying,
            "copies": self.copies.status(),
            "errors": dict(self.state.error_kinds),
            "error_times": self.state.errors_status(now),
            **self.wills.status(),
            **self._run_counts(),
        }

    def _run_counts(self) -> dict[str, object]:
        """The runs the daemon's writes made, ended (by status, the wills' FAILED included) and
        made RUNNING again since it started; a rank's or an attached process's create of a run
        that exists made nothing (RunCounts)."""
        counts = self.applier.run_counts
        return {"runs_created": counts.created, "runs_resumed": counts.resumed, "runs_ended": dict(counts.ended)}

    # -- internals -------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ClientConnection(self, reader, writer)
        refusal = self._admission(writer)
        if refusal is not None:
            await self.turn_away(conn, *refusal)
            return
        self.state.connections.add(conn)
        self.state.counters.connections += 1
        task = asyncio.current_task()
        if task is not None:
            task.set_name(f"trackd-client-{self.state.counters.connections}")
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)
        await conn.run()

    def _admission(self, writer: asyncio.StreamWriter) -> tuple[str, str] | None:
        """Why a new connection is turned away, as (ErrorCode, message); None to serve it."""
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
        except OSError as exc:
            return ErrorCode.FORBIDDEN, f"The trackd daemon could not read the connecting process's credentials ({exc})."
        if uid is not None and uid != os.getuid():
            # The daemon writes into this user's files: a process of any other user is refused,
            # whatever it would send (modes can be loosened by mistake; the kernel's uid cannot lie).
            return ErrorCode.FORBIDDEN, (
                f"Connection refused: the connecting process runs as uid {uid}, and this trackd daemon "
                f"serves only uid {os.getuid()}; each user runs their own daemon."
            )
        # A status request is told apart only by its Hello: up to CONTROL_CONNECTIONS more are let in
        # here, and a data client's Hello over the limit is refused then (over_limit).
        if len(self.state.connections) >= self.max_connections + CONTROL_CONNECTIONS:
            return self._too_many(len(self.state.connections))
        return None

    def over_limit(self, conn: ClientConnection) -> tuple[str, str] | None:
        """Why data client ``conn``, its Hello just read, is turned away (too many others); None to serve it.

        The others counted are every connection not known to be a status request: those still
        waiting for their Hello may be data clients (one that never sends it holds a slot until
        HELLO_TIMEOUT).
        """
        others = sum(
            1 for other in self.state.connections
            if other is not conn and (other.session is None or other.session.store_root)
        )
        return self._too_many(others) if others >= self.max_connections else None

    def _too_many(self, serving: int) -> tuple[str, str]:
        lowered = (
            f", lowered from {self.config.max_connections} to fit the file limit"
            if self.max_connections < self.config.max_connections else ""
        )
        return ErrorCode.TOO_MANY_CONNECTIONS, (
            f"The trackd daemon already serves {counted(serving, 'connection')}, its limit "
            f"(--max-connections {self.max_connections}{lowered}); close idle clients or raise the limit."
        )

    async def turn_away(self, conn: ClientConnection, code: str, message: str) -> None:
        """Refuse ``conn`` with ``code`` and ``message`` (``ClientConnection.refuse``), counted in status."""
        self.state.counters.connections_refused += 1
        # Not counted while it says why (up to REFUSAL_LINGER): the refused would take the slots
        # status requests are kept.
        self.state.connections.discard(conn)
        # A client turned away tries again every 2 s while it runs: over --max-connections, one
        # job logged a line per attempt. Each process's first refusal of a kind is logged.
        try:
            pid = peer_pid(conn.writer.get_extra_info("socket"))
        except OSError:
            pid = None  # as its uid could not be read: logged each time
        await conn.refuse(code, message, pid=pid, log=pid is None or self.state.first_refusal(f"pid {pid}: {code}"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _housekeeping(self) -> None:
        """Once a second: sample rates, forget finished sessions, close idle metric files, exit
        when idle for too long."""
        loop = asyncio.get_running_loop()
        files_swept_at = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.state.sample(now)
            if now - files_swept_at >= IDLE_FILE_SECONDS:
                files_swept_at = now
                # In the writer thread, between writes (the cache is the writer's alone), and not
                # waited for: a long write must not hold up the rates and the idle exit.
                loop.run_in_executor(self._executor, self.applier.close_idle_files)
            self.state.forget_sessions(now)
            self.wills.check(self)
            # A client that reconnects and still waits sends its flushes again, which adds it back.
            self.state.flushing = {
                s for s in self.state.flushing
                if s.connection is not None and (s.flushes or now - s.last_flush_at < FLUSH_RECENCY)
            }
            if self.state.connections or self._backlog_records() or self.wills.watching:
                self._idle_since = now
            elif self.config.idle_timeout and now - self._idle_since >= self.config.idle_timeout:
                logger.info("No clients for %.0f s: exiting", self.config.idle_timeout)
                self._should_exit.set()


    def note_unanswered_hello(self) -> None:
        """Count a connection its client closed before its Hello was answered; the first of a burst
        schedules the one line that says how many there were."""
        self._unanswered_hellos += 1
        if self._unanswered_hellos == 1:
            asyncio.get_running_loop().call_later(UNANSWERED_HELLO_SUMMARY_DELAY, self._say_unanswered_hellos)

    def _say_unanswered_hellos(self) -> None:
        logger.info(
            "Ignored %s closed by their clients before this daemon answered their Hello (attempts they gave up "
            "while it was stopped or too busy to answer)", counted(self._unanswered_hellos, "connection"),
        )
        self._unanswered_hellos = 0

    async def _copy_heartbeats(self) -> None:
        """Every COPY_HEARTBEAT_INTERVAL, Ack again, to each connected client whose batches wait for
        an artifact copy and that waits on something behind it (a later batch, a flush), what it
        has already had acknowledged: the daemon is alive and working for it.

        No Ack comes for the batches behind the artifact until its copy is done (a 2 GiB file took
        seconds, more on a slow disk), and a client waiting for room that hears nothing for
        TRACKD_CONNECT_TIMEOUT gives the daemon up as stopped: a 1 GiB copy with the timeout at 0.5 s
        spooled everything the process logged, six times over, each time saying the daemon "may be
        stopped (SIGSTOP, a debugger), stuck writing to its disk or deadlocked". An Ack of a batch
        already acknowledged settles nothing on the client (the protocol's Ack is cumulative), and
        whatever the daemon says renews the client's patience. Not for a store that refuses writes:
        the client waits for that outage's end, which an Ack would say had come. While no copy is
        waited for, it sleeps: an idle daemon should not wake four times a second for nothing.
        """
        while True:
            await self.copies.until_waiting()
            await asyncio.sleep(COPY_HEARTBEAT_INTERVAL)
            for session, seq in self.copies.waiting():
                behind = session.received_seq > seq or session.flushes
                if behind and session.connection is not None and session.store_root not in self.outages:
                    session.connection.send(Ack(seq=session.applied_seq))
