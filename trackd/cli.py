"""The ``trackd`` command: run and inspect the daemon, deliver spooled events."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._paths import (
    SOCKET_OPTION,
    UNWRITTEN_EXIT_CODE,
    DaemonPaths,
    check_private_directory,
    daemon_lock,
    default_paths,
    private_directory_problem,
    read_exit_report,
    read_pid_file,
    socket_path_problem,
)
from .client._control import query_status
from .client._launcher import daemon_answers, how_it_ended, last_log_line, start_and_wait
from .client._outbox import batches, events
from .client._delivery import sync_spools
from .client._media_folders import remove_orphaned
from .client._spool import default_spool_dir, spool_files
from .client._transport import DaemonRefused
from ._limits import MAX_SECONDS
from ._peer import peer_pid, peer_uid, process_state
from .daemon._state import RATE_WINDOW
from ._words import counted
from .errors import DaemonUnavailable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackd",
        description="trackd: MLflow-compatible experiment logging through a local daemon that writes ./mlruns.",
    )
    parser.add_argument("--version", action="version", version=f"trackd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    daemon = commands.add_parser("daemon", help="start, stop or inspect the daemon", description="Manage the trackd daemon (one per user and machine).")
    actions = daemon.add_subparsers(dest="action", required=True, metavar="ACTION")
    socket_help = "socket path (default: $TRACKD_SOCKET, else $XDG_RUNTIME_DIR/trackd/trackd.sock or <tmp>/trackd-<uid>/trackd.sock)"

    start = actions.add_parser("start", help="start the daemon in the background (or --foreground)", description="Start the daemon detached, with a pid file and a log file beside its socket.")
    start.add_argument("--socket", help=socket_help)
    start.add_argument("--foreground", action="store_true", help="run in this terminal, logging to stderr, until SIGTERM or Ctrl-C")
    start.add_argument("--idle-timeout", type=_seconds, default=0.0, help="exit after this many seconds without clients, batches to write, or processes whose runs it must fail if they are killed; 0 or more, 0 never exits (default: %(default)s)")
    start.add_argument("--loop", type=str.lower, choices=("auto", "uvloop", "asyncio"), help="event loop, any case (default: $TRACKD_LOOP, else uvloop if installed)")

    stop = actions.add_parser(
        "stop", help="stop the daemon after it has written everything",
        description="Send SIGTERM to the process listening on the socket (as the kernel reports it; a pid file "
        "alone is never trusted): the daemon writes what it received, then exits. Exit status: 0 when it stopped "
        "after writing everything, or none was running (a stale pid file is reported and removed); "
        f"{UNWRITTEN_EXIT_CODE} when it stopped with events it could not write in time (their clients send them "
        "again); 1 when it did not exit in time or could not be identified. Processes still connected start a new "
        "daemon as soon as they next log, flush or read (autostart); stop says so, with their count.",
    )
    stop.add_argument("--socket", help=socket_help)
    stop.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait for it to exit, 0 or more (default: %(default)s)")

    status = actions.add_parser(
        "status", help="show pid, uptime, clients, rates, backlog and errors",
        description="Show what the daemon is doing: its totals, and each client's events/s (over the totals' window) "
        "and events waiting to be written. Exit status: 0 when a daemon answered; 1 when none answers (saying "
        "whether one holds the lock, starting, stopping or hung, or listens without answering, by its pid).",
    )
    status.add_argument("--socket", help=socket_help)
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")

    sync = commands.add_parser(
        "sync", help="deliver spooled events left by processes that could not reach a daemon",
        description="Deliver every spool file (events a process kept on disk while no daemon answered) to the "
        "daemon, starting one if there is a spool file and none answers; a spool whose process is still running is left to that process. "
        "A spool damaged part way has what comes before the damage delivered, once, and the rest set aside as "
        "<id>.undeliverable.spool; exits 1 if a spool could not be delivered, or only in part. A delivered spool's "
        "large files (<id>.media/: figures, text and copies of artifacts over 8 MiB, which the daemon copied by path) are removed with it, and so are media folders "
        "no spool file waits for, no running process holds, and whose daemon holds nothing of their process left to write "
        "(asked on the socket the process used; a folder that names none goes once unchanged for a day).",
    )
    sync.add_argument("--socket", help=socket_help)
    sync.add_argument("--spool-dir", help="spool folder (default: $TRACKD_SPOOL_DIR, else $XDG_CACHE_HOME/trackd/spool, else ~/.cache/trackd/spool, else <tmp>/trackd-spool-<uid>)")
    sync.add_argument("--timeout", type=_seconds, default=60.0, help="seconds a spool's delivery may wait for the daemon to read it, each time, and then for it to be written, 0 or more; a spool not done in time stays for the next sync (default: %(default)s)")
    sync.add_argument(
        "--all-hosts", action="store_true",
        help="also deliver spools written on other hosts (a spool folder shared over NFS): their stores are "
        "written at the same paths here, so use it only when those paths are shared too",
    )
    return parser


def _seconds(text: str) -> float:
    """An argparse type: seconds, 0 or more, at most MAX_SECONDS (argparse exits 2 naming the flag otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # Bounded as ClientConfig's timeouts are: `trackd sync --timeout 1e23` ended in a traceback
    # from poll(), whose timeout is a C int of milliseconds.
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, at most {MAX_SECONDS:.0f}, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `trackd daemon status --json | head` closed the pipe: a traceback said trackd had failed.
        # Python's recipe (its signal docs, "Note on SIGPIPE"): stdout goes to devnull, so the
        # interpreter's last flush does not raise again; the exit status says the output was cut.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    paths = default_paths(args.socket)
    if args.command == "sync":
        return _sync(
            paths, Path(args.spool_dir) if args.spool_dir else default_spool_dir(), args.timeout, args.all_hosts,
            socket_given=bool(args.socket),
        )
    if args.action == "start":
        return _start(paths, args)
    if args.action == "stop":
        return _stop(paths, args.timeout)
    return _status(paths, as_json=args.json)


def _start(paths: DaemonPaths, args: argparse.Namespace) -> int:
    pid = _listener_pid(paths)
    if pid is not None:
        print(f"trackd daemon already running on {paths.socket} (pid {pid or 'unknown'})")
        return 0
    try:
        _check_socket_option(paths, given=bool(args.socket))
    except OSError as exc:
        print(f"trackd: cannot start a daemon for {paths.socket}: {exc}", file=sys.stderr)
        return 1
    extra = ["--loop", args.loop] if args.loop else []
    if args.foreground:
        from .daemon import main as daemon_main

        return daemon_main(["--socket", str(paths.socket), "--idle-timeout", str(args.idle_timeout), *extra])
    try:
        process, answered, _ = start_and_wait(paths, 15.0, idle_timeout=args.idle_timeout, extra_args=extra)
    except OSError as exc:  # its folder refused (a socket straight in /tmp), or not creatable
        print(f"trackd: cannot start a daemon for {paths.socket}: {exc}", file=sys.stderr)
        return 1
    if not answered:
        code = process.poll() if process is not None else None
        said = f": {how_it_ended(code)}: {last_log_line(paths.log)}" if code is not None else ""
        print(f"trackd: the daemon did not start{said}; see {paths.log}", file=sys.stderr)
        return 1
    pid = _listener_pid(paths) or (process.pid if process is not None else None)
    print(f"trackd daemon started (pid {pid or 'unknown'}) on {paths.socket}; log: {paths.log}")
    return 0


def _check_socket_option(paths: DaemonPaths, *, given: bool) -> None:
    """OSError if a daemon cannot use the socket path passed as --socket (``given``), advising the option.

    Checked here to name the option: the launcher's own check (the same) advised setting
    TRACKD_SOCKET to a user who had passed --socket.
    """
    if not given:
        return
    problem = socket_path_problem(paths.socket, setting=SOCKET_OPTION)
    if problem is not None:
        raise OSError(problem)
    if paths.directory.is_dir():
        check_private_directory(paths.directory, variable=SOCKET_OPTION)


def _stop(paths: DaemonPaths, timeout: float) -> int:
    """SIGTERM the daemon proven to serve ``paths.socket``, wait, and say what it reported as it exited.

    The proof is the kernel's: the pid of the process listening on the socket. The pid file is
    not: after a SIGKILL it stays behind, and the system may give its pid to a user's training job.
    """
    deadline = time.monotonic() + timeout
    while (pid := _listener_pid(paths)) is None:
        # Nothing listens. A daemon holding the lock is starting (it listens soon) or stopping
        # (it releases the lock soon); with the lock free, none runs and a pid file is stale.
        problem = private_directory_problem(paths.directory) if paths.directory.is_dir() else None
        if problem is not None:
            print(f"trackd daemon is not running on {paths.socket} ({problem})")
            return 0
        with daemon_lock(paths) as free:
            if free:
                print(f"trackd daemon is not running on {paths.socket}{_remove_stale_pid_file(paths)}")
                return 0
        if time.monotonic() >= deadline:
            print(
                f"trackd: a daemon holds {paths.lock} but nothing listens on {paths.socket} after {timeout:g} s "
                f"(starting, stopping or hung; pid file: {read_pid_file(paths) or 'none'}); nothing was signalled. "
                f"See {paths.log}.",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
    uid = _listener_uid(paths)
    if uid is not None and uid != os.getuid():
        # Another user made the socket's folder first and listens in it (see check_listener): as
        # root this signalled their process, as anyone else it ended in a PermissionError traceback.
        print(
            f"trackd: the process listening on {paths.socket} (pid {pid}) runs as uid {uid}, not as this user "
            f"(uid {os.getuid()}): it is not this user's daemon, and nothing was signalled.",
            file=sys.stderr,
        )
        return 1
    if pid == 0:
        print(
            f"trackd: something listens on {paths.socket}, but which process cannot be told from here (a daemon "
            "in another pid namespace, or one that did not answer a status request); nothing was signalled.",
            file=sys.stderr,
        )
        return 1
    connected = _connected_clients(paths)
    # A report an earlier daemon left must not be read as this one's.
    paths.exit_report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"trackd: daemon pid {pid} did not exit within {timeout:g} s; see {paths.log}", file=sys.stderr)
            return 1
        time.sleep(0.02)
    code = _exit_report(paths, pid)
    if connected:
        # Their next log call, flush or read starts a daemon again (autostart): "stop" while jobs
        # run was followed by a new daemon within a second, and nothing said why.
        print(
            f"trackd: {_count(connected, 'client')} {'was' if connected == 1 else 'were'} connected: a running process "
            "starts a new daemon as soon as it next logs, flushes or reads; stop those processes first, or run them "
            "with TRACKD_AUTOSTART=0, to keep the daemon stopped."
        )
    return code


def _exit_report(paths: DaemonPaths, pid: int) -> int:
    """Say what daemon ``pid`` reported as it exited (the ``.exit`` file), and return stop's exit status."""
    unwritten = read_exit_report(paths, pid)
    if unwritten is None:
        # Killed while it shut down, a second SIGINT, or a trackd older than exit reports.
        print(f"trackd daemon (pid {pid}) stopped; it left no report of whether it wrote everything it had received (see {paths.log})")
        return 0
    if unwritten:
        print(
            f"trackd: the daemon (pid {pid}) stopped, but {events(unwritten)} it had received "
            f"{'was' if unwritten == 1 else 'were'} not written in time (see {paths.log}). It never acknowledged them: the clients that sent them still hold them and send "
            "them to the next daemon (a client that exits first spools them for `trackd sync`).",
            file=sys.stderr,
        )
        return UNWRITTEN_EXIT_CODE
    print(f"trackd daemon (pid {pid}) stopped after writing everything it had received")
    return 0


def _connected_clients(paths: DaemonPaths) -> int:
    """How many clients the daemon says are connected (status requests not counted); 0 if it does not say."""
    try:
        count = query_status(paths.socket, timeout=2.0).get("clients_connected", 0)
    except (DaemonUnavailable, DaemonRefused):  # hung, or refusing: stop goes ahead without it
        return 0
    return count if type(count) is int else 0


def _listener_pid(paths: DaemonPaths) -> int | None:
    """The pid of the process listening on the socket, as the kernel reports it; None when nothing
    listens; 0 when something does but it cannot be told which process (in another pid namespace:
    a container sharing the folder), so nothing may be signalled.

    Where the kernel cannot tell at all (neither SO_PEERCRED nor LOCAL_PEERPID), the daemon's own
    status reply names it: still an answer on this socket, not a file that outlives its writer.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(5.0)
        probe.connect(str(paths.socket))
        pid = peer_pid(probe)
    except OSError:
        return None
    finally:
        probe.close()
    if pid is not None:
        return pid
    try:
        said = query_status(paths.socket).get("pid")
    except DaemonUnavailable:
        return 0
    return said if isinstance(said, int) and said > 0 else 0


def _listener_uid(paths: DaemonPaths) -> int | None:
    """The uid of the process listening on the socket, as the kernel reports it; None when nothing
    listens or the platform cannot tell."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(5.0)
        probe.connect(str(paths.socket))
        return peer_uid(probe)
    except OSError:
        return None
    finally:
        probe.close()


def _remove_stale_pid_file(paths: DaemonPaths) -> str:
    """Remove a pid file no daemon holds (call with the daemon's lock held); what to say about it."""
    pid = read_pid_file(paths)
    if not paths.pid.exists():
        return ""
    paths.pid.unlink(missing_ok=True)
    now = "is now another process's" if pid is not None and _alive(pid) else "belongs to no process now"
    named = f"named pid {pid}, which {now}" if pid is not None else "named no pid"
    return (
        f"; removed its stale pid file {paths.pid}, left by a daemon that did not exit cleanly (killed?): it "
        f"{named}, and was not signalled"
    )


# Clients that have disconnected, listed by `trackd daemon status` before "... and N more gone".
MAX_GONE_CLIENTS_SHOWN = 10


def _status(paths: DaemonPaths, *, as_json: bool) -> int:
    try:
        status = query_status(paths.socket)
    except DaemonRefused as exc:
        # It said "not running ... a daemon holds the lock: it is starting, stopping or hung" of an
        # older trackd's daemon, which `trackd daemon stop` stops as any other.
        print(
            f"trackd daemon pid {_listener_pid(paths) or 'unknown'} runs on {paths.socket} but refused the status "
            f"request: {exc.reason}", file=sys.stderr,
        )
        return 1
    except DaemonUnavailable as exc:
        # A stopped (SIGSTOP) or hung daemon still listens: the kernel queues the connection, and
        # names its pid, which `trackd daemon stop` would signal. It runs; it does not answer.
        pid = _listener_pid(paths)
        state = f"pid {pid} listens on {paths.socket} but does not answer" if pid else f"is not running on {paths.socket}"
        print(f"trackd daemon {state} ({exc}){_why_silent(paths)}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    # msgpack arrays arrive as tuples (the protocol decodes with use_list=False).
    clients = status.get("clients")
    # The daemon averages from RATE_WINDOW seconds ago (or its start) up to the request.
    rate_window = f"over the last {min(RATE_WINDOW, float(str(status['uptime_s']))):.2g} s"
    lines = [
        f"trackd daemon pid {status['pid']} (trackd {status['version']}, loop {status['loop']})",
        f"  socket        {status['socket']}",
        f"  uptime        {duration(float(str(status['uptime_s'])))}",
        f"  clients       {status['clients_connected']} connected, {status.get('clients_known', len(clients) if isinstance(clients, (list, tuple)) else 0)} known",
        f"  received      {_count(status['records_received'], 'event')}, {byte_size(status.get('bytes_received', 0))} ({_n(status['receive_rate'])} events/s {rate_window})",
        f"  written       {_count(status['records_written'], 'event')}, {_count(status['metric_points_written'], 'metric point')} ({_n(status['write_rate'])} events/s {rate_window})",
        f"  backlog       {_count(status['backlog_records'], 'event')} waiting to be written ({byte_size(status.get('backlog_bytes', 0))}, estimated)",
        f"  rejected      {_count(status['items_rejected'], 'item')} ({_count(status.get('events_rejected', status['items_rejected']), 'event')}); protocol errors {_n(status['protocol_errors'])}; write errors {_n(status['write_errors'])}; "
        f"connections refused {_n(status.get('connections_refused', 0))}",
        f"  dropped       {_count(status.get('events_dropped_by_clients', 0), 'event')} by clients whose buffer was full (TRACKD_ON_FULL=drop)",
        f"  throttled     {_count(status.get('throttled', 0), 'pause')} of connections over their decode budget while others waited",
        f"  runs failed   {_n(status.get('runs_failed_for_exited_clients', 0))} left RUNNING by processes that exited without ending them; "
        # wills_pending counts connections that ended with runs not ended, not every process the
        # daemon watches: "0 processes watched" was printed beside a connected job owning its run.
        f"{_count(status.get('wills_pending', 0), 'process')} disconnected with runs not ended (watched until they exit), "
        f"{_n(status.get('wills_waiting', 0))} of them exited and waiting for their events to be written, their spool "
        "delivered or their store to take writes again",
    ]
    copies = status.get("copies")
    if isinstance(copies, (list, tuple)):
        lines += [
            f"  copying       {copy['source']} for pid {copy['pid']}: {copy['copied']} of {copy['bytes']} bytes"
            for copy in copies if isinstance(copy, dict)
        ]
    errors = status.get("errors")
    if isinstance(errors, dict):
        lines += [f"  error         {kind} (x{count})" for kind, count in errors.items()]
    if isinstance(clients, (list, tuple)):
        gone_shown = gone_hidden = 0
        for client in clients:
            if isinstance(client, dict):
                if not client["connected"]:
                    # A daemon serving benchmark suites knows hundreds of finished processes.
                    if gone_shown >= MAX_GONE_CLIENTS_SHOWN:
                        gone_hidden += 1
                        continue
                    gone_shown += 1
                throttled = client.get("throttled", 0)
                paused = f", reads paused {_count(throttled, 'time')} ({client.get('throttled_s', 0)} s) for its decode budget" if throttled else ""
                # Which client the totals' rejected and dropped events came from: only --json said.
                lost = "".join(
                    f", {_count(count, 'event')} {what}" for what, count in (("rejected", client.get("rejected", 0)), ("dropped", client.get("dropped", 0))) if count
                )
                # Its share of the totals' rate (the same window) and backlog; absent from an older daemon's reply.
                rate = f", {_n(client['receive_rate'])} events/s" if "receive_rate" in client else ""
                waiting = f", {_count(client['backlog_records'], 'event')} waiting to be written" if "backlog_records" in client else ""
                lines.append(
                    f"  client        pid {client['pid']}@{client['host']} {'connected' if client['connected'] else 'gone'}{rate}{waiting}, "
                    f"batch {client['written_seq']}/{client['received_seq']} written{lost}{paused}, store {client['store']}"
                )
        # The daemon lists at most MAX_STATUS_CLIENTS (connected first, then the latest to leave), to
        # keep its reply within one frame; clients_known counts them all. "--json lists every client"
        # was said of a reply listing 256 of 633.
        listed = len(clients)
        known = status.get("clients_known", listed)
        unlisted = known - listed if isinstance(known, int) and known > listed else 0
        if unlisted:
            hidden = f"{_n(gone_hidden)} more gone (--json lists them), and " if gone_hidden else ""
            lines.append(
                f"  client        ... and {hidden}{_n(unlisted)} more that the daemon does not list, here or in --json: "
                f"it lists {_n(listed)} of the {_n(known)} clients it knows, connected ones first, then the latest to leave"
            )
        elif gone_hidden:
            lines.append(f"  client        ... and {_n(gone_hidden)} more gone (--json lists every client)")
    print("\n".join(lines))
    return 0


def _n(count: object) -> str:
    """A count or rate read at a glance: 1,234,567; a rate under 100 keeps a decimal (0.4, not 0)."""
    if isinstance(count, float):
        return f"{count:,.1f}" if count < 100 else f"{count:,.0f}"
    return f"{count:,}" if isinstance(count, int) else str(count)


def _count(count: object, noun: str) -> str:
    """A count as ``_n`` writes it, and its noun agreeing: "1 event", "1,234 events"."""
    return counted(count, noun, grouped=True)


def byte_size(size: object) -> str:
    """Bytes as a person reads them: "512 bytes", "4.7 MiB", "1.2 GiB"."""
    if not isinstance(size, (int, float)):
        return f"{size} bytes"
    if size < 1024:
        return f"{size:g} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def duration(seconds: float) -> str:
    """Seconds as a person reads them at a glance: "42 s", "3 min 20 s", "1 d 2 h 3 min" (a daemon up for days)."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"  # 59.6 is not "60 s", which reads as a minute
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    parts.append(f"{minutes} min")
    if not days:
        parts.append(f"{secs} s")
    return " ".join(parts)


def _why_silent(paths: DaemonPaths) -> str:
    """What the files beside a socket nothing answers on say: a daemon starting or stopping, or a stale pid file."""
    if not paths.directory.is_dir() or private_directory_problem(paths.directory) is not None:
        return ""
    with daemon_lock(paths) as free:
        if not free:
            return f"; a daemon holds {paths.lock}: it is starting, stopping or hung (see {paths.log})"
    pid = read_pid_file(paths)
    if pid is None:
        return ""
    return (
        f"; its pid file {paths.pid} is stale (pid {pid}, left by a daemon that did not exit cleanly; "
        "`trackd daemon stop` removes it without signalling that pid)"
    )


def _sync(paths: DaemonPaths, spool_dir: Path, timeout: float, any_host: bool, *, socket_given: bool = False) -> int:
    try:
        found = spool_files(spool_dir)
    except PermissionError as exc:  # another user's folder, or one others may write: nothing in it is ours to trust
        print(f"trackd: nothing delivered from {spool_dir}: {exc}", file=sys.stderr)
        return 1
    if not found:
        # Checked before a daemon is started for it: one started for nothing stayed 600 s.
        print(f"Nothing to deliver: no spool files in {spool_dir}")
        _remove_orphaned_media(spool_dir)
        return 0
    if not daemon_answers(paths.socket):
        try:
            _check_socket_option(paths, given=socket_given)
            _, answered, _ = start_and_wait(paths, 15.0)
        except OSError as exc:  # its folder refused (a socket straight in /tmp), or not creatable
            print(f"trackd: no daemon answers on {paths.socket}, and none can be started: {exc}", file=sys.stderr)
            return 1
        if not answered:
            print(f"trackd: no daemon answers on {paths.socket} and none could be started; see {paths.log}", file=sys.stderr)
            return 1
    results = sync_spools(spool_dir, paths.socket, timeout=timeout, any_host=any_host)
    if not results:
        print(f"Nothing to deliver: no spool files in {spool_dir} (another process delivered them)")
    failed = False
    for result in results:
        if result.error:
            failed = True
            if result.batches:  # those before the damage: the rest is not
                print(f"{result.path}: delivered {batches(result.batches)} of client {result.client_id}, but not the rest")
            aside = f"; set aside as {result.aside}" if result.aside not in (None, result.path) else ""
            print(f"{result.path}: {'the rest is ' if result.batches else ''}not delivered: {result.error}{aside}", file=sys.stderr)
        elif result.skipped:
            print(f"{result.path}: left alone, its process is still running and delivers it itself")
        elif result.gone:
            print(f"{result.path}: delivered meanwhile by another process")
        elif result.empty:
            print(f"{result.path}: removed, empty: its process could not write to it, so nothing was in it")
        elif result.other_host:
            print(
                f"{result.path}: left alone, written on host {result.other_host}: run trackd sync there, or "
                "--all-hosts if its store path is shared with this host"
            )
        elif result.batches:
            before = f" (the store had {batches(result.written_before)} of it already)" if result.written_before else ""
            print(f"{result.path}: delivered {batches(result.batches)} of client {result.client_id}{before}")
        else:
            # "delivered 0 batches" read as a failure: the daemon had written them before the file was read.
            print(
                f"{result.path}: removed, nothing to send: the store had every batch of client {result.client_id} "
                f"already ({batches(result.written_before)})"
            )
        for rejection in result.rejected:
            print(f"  refused by the store: {rejection}", file=sys.stderr)
        for reason in result.undecodable:
            print(f"  lost, not delivered: {reason}", file=sys.stderr)
    _remove_orphaned_media(spool_dir)
    return 1 if failed else 0


def _remove_orphaned_media(spool_dir: Path) -> None:
    """Remove, and say, the media folders no spool file waits for, no process holds and no daemon still copies from."""
    removed, kept = remove_orphaned(spool_dir)
    for folder in removed:
        print(f"{folder}: removed, large files (figures, text, copies of artifacts) of an exited process that no spool file waits for (copied, or lost)")
    for folder, why in kept:
        print(f"{folder}: kept, large files of an exited process that no spool file waits for: {why}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits for its parent to reap it (Linux; False elsewhere).

    A daemon a client started is that client's child: until the client reaps it, signal 0 still
    finds it, and `trackd daemon stop` waited its whole timeout for a daemon long gone."""
    return process_state(pid)[0] == "Z"


if __name__ == "__main__":
    sys.exit(main())
