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
    SPOOL_DIR_ENV,
    SPOOL_DIR_OPTION,
    UNWRITTEN_EXIT_CODE,
    DaemonPaths,
    check_private_directory,
    daemon_lock,
    default_paths,
    lock_holder,
    private_directory_problem,
    read_exit_report,
    read_pid_file,
    socket_path_problem,
)
from .client._control import listener_pid, query_status, stopped_words, without_socket, without_socket_words
from .client._launcher import daemon_answers, how_it_ended, last_log_line, start_and_wait
from .client._outbox import events, events_in
from .client._delivery import sync_spools
from .client._media_folders import remove_orphaned
from .client._spool import default_spool_dir, spool_files
from .client._transport import DaemonRefused
from ._limits import MAX_SECONDS
from ._peer import connect, peer_uid, process_state
from ._pinned import PinnedProcess
from ._status_command import status_command
from .daemon._listener import WATCH_INTERVAL
from .daemon._main import add_tuning_flags
from ._words import counted
from .errors import DaemonUnavailable

# How long `trackd daemon start` waits for a running daemon whose socket file was removed to listen
# on a new one (it looks once per WATCH_INTERVAL) before it says that one never will (an older trackd).
SOCKETLESS_WAIT = 3 * WATCH_INTERVAL


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

    start = actions.add_parser(
        "start", help="start the daemon in the background (or --foreground)",
        description="Start the daemon detached, with a pid file and a log file beside its socket (the log file "
        "--log-max-bytes rotates), or in this terminal with --foreground. The daemon's flags (those of "
        "`python -m trackd.daemon --help` but --socket and --log-file, which are set here) are passed on to it when given.",
        epilog="Precedence: a flag given here, then the same flag in $TRACKD_DAEMON_ARGS, then the daemon's default "
        "(shown above). A flag not given here is not passed on, so TRACKD_DAEMON_ARGS configures it.",
    )
    start.add_argument("--socket", help=socket_help)
    start.add_argument("--foreground", action="store_true", help="run in this terminal, logging to stderr, until SIGTERM or Ctrl-C")
    start.set_defaults(daemon_flags=add_tuning_flags(start, defaults=False))

    stop = actions.add_parser(
        "stop", help="stop the daemon after it has written everything",
        description="Send SIGTERM to the process listening on the socket (as the kernel reports it; a pid file "
        "alone is never trusted), or, its socket file removed, to the pid its pid file names when /proc/locks shows "
        "that process holding its lock (on Linux through a pidfd opened before that proof is made again, so a process "
        "given the pid of a daemon that exited meanwhile is not signalled): the daemon writes what it received, then exits. Exit status: 0 when it stopped "
        "after writing everything, or none was running (a stale pid file is reported and removed); "
        f"{UNWRITTEN_EXIT_CODE} when it stopped with events it could not write in time (their clients send them "
        "again); 1 when it did not exit in time or could not be identified. Processes still connected start a new "
        "daemon as soon as they next log, flush or read (autostart); stop says so, with their count.",
    )
    stop.add_argument("--socket", help=socket_help)
    stop.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait for it to exit, 0 or more, at most 604800 (default: %(default)s)")

    spool_dir_help = "spool folder (default: $TRACKD_SPOOL_DIR, else $XDG_CACHE_HOME/trackd/spool, else ~/.cache/trackd/spool, else <tmp>/trackd-spool-<uid>)"

    status = actions.add_parser(
        "status", help="show pid, uptime, clients, rates, backlog, runs made and ended, errors and spool files waiting",
        description="Show what the daemon is doing: its totals, the runs it made, resumed and ended (by status) "
        "since it started (a create of a run that exists, by a rank or an attached process, makes none), each kind of error with when it last happened (and, "
        "for a store that refused writes, whether it takes them again), each client (its pid, and on Linux its "
        "RANK/LOCAL_RANK, parent client and short command) with its events/s (over the totals' window, or since it "
        "connected if shorter; none once it left) and events waiting to be written, and a previous daemon that "
        "ended without a clean exit; and, whether a daemon runs or not, the spool files "
        "waiting in the spool folder `trackd sync` reads (files, bytes, the oldest's age, and what delivers them). "
        "Exit status: 0 when a daemon answered; 1 when none answers (saying "
        "whether one holds the lock: starting, stopping or hung, or, by its pid, with its socket file missing; or "
        "listens without answering, by its pid, at once when its process is stopped by SIGSTOP).",
    )
    status.add_argument("--socket", help=socket_help)
    status.add_argument("--spool-dir", help=spool_dir_help)
    status.add_argument(
        "--json", action="store_true",
        help="print the daemon's status as JSON, with the spool folder's files under \"spool\" (when no daemon "
        "answers: {\"running\": false, \"spool\": ...})",
    )

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
    sync.add_argument("--spool-dir", help=spool_dir_help)
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
            paths, _spool_dir(args), args.timeout, args.all_hosts,
            socket_given=bool(args.socket), spool_setting=_spool_setting(args),
        )
    if args.action == "start":
        return _start(paths, args)
    if args.action == "stop":
        return _stop(paths, args.timeout)
    return status_command(paths, _spool_dir(args), as_json=args.json, spool_setting=_spool_setting(args))


def _spool_dir(args: argparse.Namespace) -> Path:
    """The spool folder --spool-dir names, else the one this user's processes spool to."""
    return Path(args.spool_dir) if args.spool_dir else default_spool_dir()


def _spool_setting(args: argparse.Namespace) -> str:
    """What chose the spool folder, for the advice of a refusal: --spool-dir, else the variable."""
    return SPOOL_DIR_OPTION if args.spool_dir else SPOOL_DIR_ENV


def _start(paths: DaemonPaths, args: argparse.Namespace) -> int:
    pid = listener_pid(paths.socket)
    if pid is None and (socketless := without_socket(paths)) is not None:
        # A daemon runs, its socket file removed: a current one listens on a new one within a
        # look or two; an older one never does, and a start waited 15 s for its lock, then failed.
        deadline = time.monotonic() + SOCKETLESS_WAIT
        while (pid := listener_pid(paths.socket)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is None:
            print(f"trackd: no daemon was started: {without_socket_words(paths, socketless)}.", file=sys.stderr)
            return 1
    # The daemon's flags given here, and only those: one not given leaves TRACKD_DAEMON_ARGS's
    # value in force (the daemon reads that variable first, then its command line).
    given = [(action.option_strings[0], getattr(args, action.dest)) for action in args.daemon_flags if hasattr(args, action.dest)]
    extra = [f"{flag}={value}" for flag, value in given]
    if pid is not None:
        print(f"trackd daemon already running on {paths.socket} (pid {pid or 'unknown'})")
        if extra:
            # They were dropped without a word: a user readying a daemon for 200 parallel jobs
            # (--max-connections) believed the autostarted one had them. Said as given (5, not 5.0).
            said = " ".join(f"{flag}={value:g}" if isinstance(value, float) else f"{flag}={value}" for flag, value in given)
            print(
                f"trackd: {said} {'does' if len(given) == 1 else 'do'} not apply to the daemon already running; "
                f"`trackd daemon stop` first, then `trackd daemon start` with {'it' if len(given) == 1 else 'them'}.",
                file=sys.stderr,
            )
        return 0
    try:
        _check_socket_option(paths, given=bool(args.socket))
    except OSError as exc:
        print(f"trackd: cannot start a daemon for {paths.socket}: {exc}", file=sys.stderr)
        return 1
    if args.foreground:
        from .daemon import main as daemon_main

        return daemon_main(["--socket", str(paths.socket), *extra])
    try:
        process, answered, *_ = start_and_wait(paths, 15.0, idle_timeout=None, extra_args=extra)
    except OSError as exc:  # its folder refused (a socket straight in /tmp), or not creatable
        print(f"trackd: cannot start a daemon for {paths.socket}: {exc}", file=sys.stderr)
        return 1
    if not answered:
        code = process.poll() if process is not None else None
        # The log's last line ends its own sentence: "(any case).; see" read as a typo.
        said = f": {how_it_ended(code)}: {(last_log_line(paths.log) or '').rstrip('.')}" if code is not None else ""
        print(f"trackd: the daemon did not start{said}; see {paths.log}", file=sys.stderr)
        return 1
    pid = listener_pid(paths.socket) or (process.pid if process is not None else None)
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
    while (pid := listener_pid(paths.socket)) is None:
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
        socketless = without_socket(paths)
        if socketless is not None and socketless.doubt is None:
            pid = socketless.pid  # its socket file removed, it holds the lock: the kernel says so
            break
        if socketless is not None and time.monotonic() >= deadline:
            print(
                f"trackd: {without_socket_words(paths, socketless)}; nothing was signalled: {socketless.doubt}, so pid "
                f"{socketless.pid} cannot be proven to be the daemon.",
                file=sys.stderr,
            )
            return 1
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
    try:
        daemon = PinnedProcess(pid)
    except ProcessLookupError:
        daemon = None
    if daemon is None or (daemon.pinned and not _still_the_daemon(paths, pid)):
        # Gone since it was proven, or another daemon took over: its pid may be another process's
        # now. Proven again, what this pidfd holds is the daemon, or has exited (no signal reaches it).
        if daemon is not None:
            daemon.close()
        return _stop(paths, max(0.0, deadline - time.monotonic()))
    with daemon:
        return _signal_and_wait(paths, daemon, timeout)


def _still_the_daemon(paths: DaemonPaths, pid: int) -> bool:
    """Whether the kernel still names ``pid`` as the daemon: listening on its socket, or holding its lock."""
    if listener_pid(paths.socket) == pid:
        return True
    try:
        return lock_holder(paths) == pid
    except (OSError, ValueError):
        return False


def _signal_and_wait(paths: DaemonPaths, daemon: PinnedProcess, timeout: float) -> int:
    """SIGTERM the daemon, wait for it to exit, and say what it reported.

    Signalled through its pidfd where the system has them: a daemon that exited since it was
    proven, its pid given to another process (a user's training job), is not signalled, where
    `os.kill` signalled that process. The window is seconds wide: the status request counting
    clients waits up to 2 s for a busy daemon.
    """
    pid = daemon.pid
    if stopped_words(pid) is not None:
        # Stopped (SIGSTOP, Ctrl-Z), it answers neither the status request that counts its clients
        # (stop waited 2 s for it and then said nothing of them) nor its SIGTERM until it runs again.
        daemon.signal(signal.SIGCONT)
    connected = _connected_clients(paths)
    # A report an earlier daemon left must not be read as this one's.
    paths.exit_report.unlink(missing_ok=True)
    daemon.signal(signal.SIGTERM)  # False: it exited meanwhile, which the wait below finds
    # A daemon stopped with SIGSTOP (Ctrl-Z in its terminal) keeps its SIGTERM pending until it
    # runs again: stop waited its whole timeout and failed. Resumed, it shuts down as asked (as
    # systemd sends SIGCONT after SIGTERM; again here, for one stopped since the look above); a
    # running daemon ignores SIGCONT.
    daemon.signal(signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while not daemon.exited():
        if time.monotonic() > deadline:
            print(f"trackd: daemon pid {pid} did not exit within {timeout:g} s; see {paths.log}", file=sys.stderr)
            return 1
        time.sleep(0.02)
    code = _exit_report(paths, pid)
    if connected:
        # Their next log call, flush or read starts a daemon again (autostart): "stop" while jobs
        # run was followed by a new daemon within a second, and nothing said why.
        print(
            f"trackd: {counted(connected, 'client', grouped=True)} {'was' if connected == 1 else 'were'} connected: a running process "
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


def _listener_uid(paths: DaemonPaths) -> int | None:
    """The uid of the process listening on the socket, as the kernel reports it; None when nothing
    listens or the platform cannot tell."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect(probe, str(paths.socket), 5.0)
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


def _sync(
    paths: DaemonPaths, spool_dir: Path, timeout: float, any_host: bool, *, socket_given: bool = False,
    spool_setting: str = SPOOL_DIR_ENV,
) -> int:
    try:
        found = spool_files(spool_dir, setting=spool_setting)
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
            _, answered, *_ = start_and_wait(paths, 15.0)
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
                print(f"{result.path}: delivered {events_in(result.events, result.batches)} of client {result.client_id}, but not the rest")
            error = result.error
            if result.aside not in (None, result.path):
                # (Its error may end a sentence: "... are accepted.; set aside as" read badly.)
                error = f"{error.rstrip().rstrip('.')}; set aside as {result.aside}"
            print(f"{result.path}: {'the rest is ' if result.batches else ''}not delivered: {error}", file=sys.stderr)
        elif result.skipped:
            print(f"{result.path}: left alone, its process is still running and delivers it itself")
        elif result.gone:
            print(f"{result.path}: delivered meanwhile by another process")
        elif result.empty and result.kept:
            # Nothing in it to deliver: not a failure (it failed every sync, the folder read-only).
            print(f"{result.path}: empty; could not be removed ({result.kept})")
        elif result.empty:
            print(f"{result.path}: removed, empty: its process could not write to it, so nothing was in it")
        elif result.other_host:
            print(
                f"{result.path}: left alone, written on host {result.other_host}: run trackd sync there, or "
                "--all-hosts if its store path is shared with this host"
            )
        elif result.batches:
            before = (
                f"; the store had {events_in(result.events_before, result.written_before)} of it already" if result.written_before else ""
            )
            print(f"{result.path}: delivered {events_in(result.events, result.batches)} of client {result.client_id}{before}")
        elif not result.written_before:
            # Every batch undecodable or refused whole: the lines below say which and why.
            print(f"{result.path}: {'' if result.kept else 'removed, '}none of its batches of client {result.client_id} could be delivered")
        else:
            # "delivered 0 batches" read as a failure: the daemon had written them before the file was read.
            print(
                f"{result.path}: {'' if result.kept else 'removed, '}nothing to send: the store had every batch of client {result.client_id} "
                f"already: {events_in(result.events_before, result.written_before)}"
            )
        if result.kept and not result.empty and not result.error:
            print(f"{result.path}: could not be removed ({result.kept}); it is left empty")
        for rejection in result.rejected:
            print(f"  refused by the store: {rejection}", file=sys.stderr)
        for reason in result.undecodable:
            print(f"  lost, not delivered: {reason}", file=sys.stderr)
        # Delivered only in part: batches lost or items the store refused are not in it. sync exited
        # 0 after saying every batch of a spool was lost, and a script checking it saw success.
        failed = failed or bool(result.rejected or result.rejected_unnamed or result.undecodable)
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
