"""The ``trackd`` command: run and inspect the daemon, deliver spooled events."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._paths import DaemonPaths, default_paths
from .client._control import query_status
from .client._launcher import daemon_answers, last_log_line, spawn_daemon, wait_until_answering
from .client._spool import default_spool_dir, sync_spools
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
    socket_help = "socket path (default: $TRACKD_SOCKET, else $XDG_RUNTIME_DIR/trackd/trackd.sock or /tmp/trackd-<uid>/trackd.sock)"

    start = actions.add_parser("start", help="start the daemon in the background (or --foreground)", description="Start the daemon detached, with a pid file and a log file beside its socket.")
    start.add_argument("--socket", help=socket_help)
    start.add_argument("--foreground", action="store_true", help="run in this terminal, logging to stderr, until SIGTERM or Ctrl-C")
    start.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many seconds without clients; 0 never exits (default: %(default)s)")
    start.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), help="event loop (default: uvloop if installed)")

    stop = actions.add_parser("stop", help="stop the daemon after it has written everything", description="Send SIGTERM: the daemon writes what it received, then exits.")
    stop.add_argument("--socket", help=socket_help)
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to exit (default: %(default)s)")

    status = actions.add_parser("status", help="show pid, uptime, clients, rates, backlog and errors", description="Show what the daemon is doing.")
    status.add_argument("--socket", help=socket_help)
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")

    sync = commands.add_parser(
        "sync", help="deliver spooled events left by processes that could not reach a daemon",
        description="Deliver every spool file (events a process kept on disk while no daemon answered) to the "
        "daemon, starting one if needed; a spool whose process is still running is left to that process.",
    )
    sync.add_argument("--socket", help=socket_help)
    sync.add_argument("--spool-dir", help="spool folder (default: $TRACKD_SPOOL_DIR, else $XDG_CACHE_HOME/trackd/spool, else ~/.cache/trackd/spool, else <tmp>/trackd-spool-<uid>)")
    sync.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each spool to be written (default: %(default)s)")
    sync.add_argument(
        "--all-hosts", action="store_true",
        help="also deliver spools written on other hosts (a spool folder shared over NFS): their stores are "
        "written at the same paths here, so use it only when those paths are shared too",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = default_paths(args.socket)
    if args.command == "sync":
        return _sync(paths, Path(args.spool_dir) if args.spool_dir else default_spool_dir(), args.timeout, args.all_hosts)
    if args.action == "start":
        return _start(paths, args)
    if args.action == "stop":
        return _stop(paths, args.timeout)
    return _status(paths, as_json=args.json)


def _start(paths: DaemonPaths, args: argparse.Namespace) -> int:
    if daemon_answers(paths.socket):
        print(f"trackd daemon already running on {paths.socket} (pid {_read_pid(paths) or 'unknown'})")
        return 0
    extra = ["--loop", args.loop] if args.loop else []
    if args.foreground:
        from .daemon import main as daemon_main

        return daemon_main(["--socket", str(paths.socket), "--idle-timeout", str(args.idle_timeout), *extra])
    try:
        process = spawn_daemon(paths, idle_timeout=args.idle_timeout, extra_args=extra)
    except OSError as exc:  # its folder refused (a socket straight in /tmp), or not creatable
        print(f"trackd: cannot start a daemon for {paths.socket}: {exc}", file=sys.stderr)
        return 1
    if not wait_until_answering(paths, process, timeout=15.0):
        code = process.poll()
        said = f": exited with code {code}: {last_log_line(paths.log)}" if code is not None else ""
        print(f"trackd: the daemon did not start{said}; see {paths.log}", file=sys.stderr)
        return 1
    print(f"trackd daemon started (pid {_read_pid(paths) or process.pid}) on {paths.socket}; log: {paths.log}")
    return 0


def _stop(paths: DaemonPaths, timeout: float) -> int:
    pid = _read_pid(paths)
    if pid is None or not _alive(pid):
        print(f"trackd daemon is not running on {paths.socket}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"trackd: daemon pid {pid} did not exit within {timeout:g} s; see {paths.log}", file=sys.stderr)
            return 1
        time.sleep(0.02)
    print(f"trackd daemon (pid {pid}) stopped after writing everything it had received")
    return 0


# Clients that have disconnected, listed by `trackd daemon status` before "... and N more gone".
MAX_GONE_CLIENTS_SHOWN = 10


def _status(paths: DaemonPaths, *, as_json: bool) -> int:
    try:
        status = query_status(paths.socket)
    except DaemonUnavailable as exc:
        print(f"trackd daemon is not running on {paths.socket} ({exc})", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    # msgpack arrays arrive as tuples (the protocol decodes with use_list=False).
    clients = status.get("clients")
    lines = [
        f"trackd daemon pid {status['pid']} (trackd {status['version']}, loop {status['loop']})",
        f"  socket        {status['socket']}",
        f"  uptime        {float(str(status['uptime_s'])):.0f} s",
        f"  clients       {status['clients_connected']} connected, {status.get('clients_known', len(clients) if isinstance(clients, (list, tuple)) else 0)} known",
        f"  received      {status['records_received']} events, {status.get('bytes_received', 0)} bytes ({status['receive_rate']} events/s)",
        f"  written       {status['records_written']} events, {status['metric_points_written']} metric points ({status['write_rate']}/s)",
        f"  backlog       {status['backlog_records']} events waiting to be written ({status.get('backlog_bytes', 0)} bytes, estimated)",
        f"  rejected      {status['items_rejected']} items ({status.get('events_rejected', status['items_rejected'])} events); protocol errors {status['protocol_errors']}; write errors {status['write_errors']}",
        f"  dropped       {status.get('events_dropped_by_clients', 0)} events by clients whose buffer was full (TRACKD_ON_FULL=drop)",
        f"  throttled     {status.get('throttled', 0)} pauses of connections over their decode budget while others waited",
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
                paused = f", reads paused {throttled} times ({client.get('throttled_s', 0)} s) for its decode budget" if throttled else ""
                lines.append(
                    f"  client        pid {client['pid']}@{client['host']} {'connected' if client['connected'] else 'gone'}, "
                    f"batch {client['written_seq']}/{client['received_seq']} written{paused}, store {client['store']}"
                )
        if gone_hidden:
            lines.append(f"  client        ... and {gone_hidden} more gone (--json lists every client)")
    print("\n".join(lines))
    return 0


def _sync(paths: DaemonPaths, spool_dir: Path, timeout: float, any_host: bool) -> int:
    if not daemon_answers(paths.socket):
        try:
            process = spawn_daemon(paths)
        except OSError as exc:  # its folder refused (a socket straight in /tmp), or not creatable
            print(f"trackd: no daemon answers on {paths.socket}, and none can be started: {exc}", file=sys.stderr)
            return 1
        if not wait_until_answering(paths, process, timeout=15.0):
            print(f"trackd: no daemon answers on {paths.socket} and none could be started; see {paths.log}", file=sys.stderr)
            return 1
    results = sync_spools(spool_dir, paths.socket, timeout=timeout, any_host=any_host)
    if not results:
        print(f"Nothing to deliver: no spool files in {spool_dir}")
    failed = False
    for result in results:
        if result.error:
            failed = True
            print(f"{result.path}: not delivered: {result.error}", file=sys.stderr)
        elif result.skipped:
            print(f"{result.path}: left alone, its process is still running and delivers it itself")
        elif result.other_host:
            print(
                f"{result.path}: left alone, written on host {result.other_host}: run trackd sync there, or "
                "--all-hosts if its store path is shared with this host"
            )
        else:
            print(f"{result.path}: delivered {result.batches} batches of client {result.client_id}")
            for rejection in result.rejected:
                print(f"  refused by the store: {rejection}", file=sys.stderr)
    return 1 if failed else 0


def _read_pid(paths: DaemonPaths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


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
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read()
    except OSError:
        return False
    return fields[fields.rfind(b")") + 2:][:1] == b"Z"


if __name__ == "__main__":
    sys.exit(main())
