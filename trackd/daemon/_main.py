"""``python -m trackd.daemon``: run a daemon in the foreground (the client and the CLI detach it)."""

from __future__ import annotations

import argparse
import gc
import logging
import logging.handlers
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._limits import MAX_COUNT, MAX_SECONDS
from .._paths import (
    ALREADY_RUNNING_EXIT_CODE, SOCKET_ENV, SOCKET_OPTION, UNWRITTEN_EXIT_CODE, default_paths, socket_path_problem, write_exit_report,
)
from .._signals import take_signals
from ._batcher import DEFAULT_MAX_AGE, DEFAULT_MAX_RECORDS
from ._budget import DEFAULT_MAX_EVENTS_PER_SECOND
from ._config import DEFAULT_MAX_CONNECTIONS, DaemonConfig
from ._loop import LOOP_CHOICES, loop_factory
from ._files import AlreadyRunning, CannotStart
from ._server import Server

LOG_FORMAT = "%(asctime)s %(levelname)s pid %(process)d %(message)s"
# What argparse exits with for a bad flag; a bad TRACKD_LOOP is refused the same way.
USAGE_EXIT_CODE = 2
# The daemon allocates a tuple or two per point it decodes and per file it writes, and none of them
# form cycles; at CPython's default (700) the collector ran every few hundred points and took ~25%
# of a write to 10,000 files (10,000: that write went from 8.0 to 6.1 us per file, 2026-11-26).
GC_THRESHOLD = 10_000
# The log file is rotated past this size, keeping one older file (LOG.1): a daemon that serves a
# benchmark suite writes two lines per process, and lives as long as processes keep coming.
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024

N = TypeVar("N", int, float)


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file, rotated; an autostarted daemon's stdout and stderr (where a fatal error or an
    unhandled exception in a thread goes) point at the same file, and follow it to the new one
    instead of writing on into the renamed, later deleted, old one."""

    def doRollover(self) -> None:
        try:
            log = os.stat(self.baseFilename)
            follow = [fd for fd in (1, 2) if _is_file(fd, log)]
        except (OSError, ValueError):
            follow = []
        super().doRollover()
        if self.stream is not None:
            for fd in follow:
                os.dup2(self.stream.fileno(), fd)


def _is_file(fd: int, info: os.stat_result) -> bool:
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (info.st_dev, info.st_ino)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trackd.daemon",
        description="Run the trackd daemon in the foreground: it receives events from trackd clients on a "
        "Unix socket and writes them into ./mlruns stores in MLflow's format.",
        epilog="Flags in $TRACKD_DAEMON_ARGS come first, so the command line overrides them; a daemon that a "
        "client starts by itself inherits the client's environment, so that is how to configure it.",
    )
    parser.add_argument("--socket", help="socket path (default: $TRACKD_SOCKET, else the per-user runtime directory)")
    parser.add_argument("--log-file", help="append log lines to this file instead of stderr")
    add_tuning_flags(parser)
    return parser


def add_tuning_flags(parser: argparse.ArgumentParser, *, defaults: bool = True) -> list[argparse.Action]:
    """Add the daemon's flags other than --socket and --log-file to ``parser``; the actions added.

    Their one definition: ``trackd daemon start`` adds them too, with ``defaults`` False, so that a
    flag not given there is not passed on and leaves TRACKD_DAEMON_ARGS's value, or the daemon's
    default, in force (the help names the daemon's default either way).
    """

    def flag(name: str, default: object, help: str, **kwargs: Any) -> argparse.Action:
        shown = "" if default is None else f" (default: {default})"  # None: ``help`` says what it is
        return parser.add_argument(name, default=default if defaults else argparse.SUPPRESS, help=help + shown, **kwargs)

    return [
        flag(
            "--log-max-bytes", DEFAULT_LOG_MAX_BYTES, type=_positive_int,
            help="when logging to a file (--log-file; trackd daemon start's log beside the socket): past this size the file is renamed to FILE.1 (replacing an older one) and a new one begun, at least 1",
        ),
        flag("--loop", None, type=str.lower, choices=LOOP_CHOICES, help="event loop, any case (default: $TRACKD_LOOP, else uvloop if installed)"),
        flag("--max-age", DEFAULT_MAX_AGE, type=_seconds, help="longest a received event waits before its write starts, in seconds, 0 or more, at most 604800 (a week)"),
        flag("--max-records", DEFAULT_MAX_RECORDS, type=_positive_int, help="events (metric points, params, tags...) per write, at least 1"),
        flag("--max-open-files", None, type=_positive_int, help="descriptors kept open for metric files and, a sixteenth of them, their folders (another sixteenth, at most 48, for the folders a write of params and tags holds), all stores together, at least 1 (default: as many as the file limit allows after room for connections, up to 16384)"),
        flag("--max-connections", DEFAULT_MAX_CONNECTIONS, type=_positive_int, help="client connections served at once, at least 1; more are refused (status requests get 8 more); lowered at start, with a warning, to what the file limit (ulimit -n) leaves after the metric files' least and 104 descriptors of the daemon's own"),
        flag(
            "--max-events-per-second", DEFAULT_MAX_EVENTS_PER_SECOND, type=_positive_int,
            help="each connection's budget of decoded events (metric points, params, ...) per second; a connection over it "
            "stops being read for a while (its sender waits; nothing is dropped), but only while another client waits on a "
            "flush or sent one in the last 0.1 s; at least 1",
        ),
        flag("--idle-timeout", 0.0, type=_seconds, help="exit after this many seconds without clients, batches to write, or processes whose runs it must fail if they are killed, 0 or more, at most 604800 (a week); 0 never exits"),
        flag("--log-level", "INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="the least severe lines logged"),
    ]


def _checked(parse: Callable[[str], N], accepts: Callable[[N], bool], expected: str) -> Callable[[str], N]:
    """An argparse type: ``parse`` the text, and refuse what does not parse or is not ``accepts``-ed,
    so that argparse exits 2 with "argument --flag: expected <expected>, got '<text>'"."""

    def convert(text: str) -> N:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


# Counts and limits: 0 would refuse every connection or never write; past MAX_COUNT see _limits.py.
_positive_int = _checked(int, lambda value: 1 <= value <= MAX_COUNT, "a whole number of at least 1, at most 2**63 - 1")
# Durations: a negative one or nan means nothing, and inf would leave a quiet client's events
# unwritten (--max-age) or repeat what 0 already means (--idle-timeout: never exit). Bounded as
# the client's timeouts are: --max-age 1e300 was taken, and a client that logged and did not
# flush had its events wait for ever (the start line said "after 1000000000...000 ms").
_seconds = _checked(float, lambda value: 0 <= value <= MAX_SECONDS, f"a number of seconds, 0 or more, at most {MAX_SECONDS:.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    take_signals()  # a client's sender thread, which started this daemon, blocks SIGTERM and SIGINT
    # TRACKD_DAEMON_ARGS configures a daemon that clients start by themselves (it inherits their
    # environment); flags on the command line come after it, so they win.
    raw_env_args = os.environ.get("TRACKD_DAEMON_ARGS", "")
    try:
        env_args = shlex.split(raw_env_args)
    except ValueError as exc:  # an unclosed quote: it was a traceback and exit code 1, read as a crash
        message = (
            f"Cannot start: Environment variable TRACKD_DAEMON_ARGS={raw_env_args!r} is not valid: {exc}; expected "
            "daemon flags as shell words, e.g. --max-open-files 4096."
        )
        print(f"trackd: {message}", file=sys.stderr)  # no log file yet: an autostarted daemon's stderr is its log
        return USAGE_EXIT_CODE
    if env_args:
        # Parsed alone first, so a bad flag there is reported as the variable's, not the command line's.
        env_parser = build_parser()
        env_parser.prog = f"{env_parser.prog} (flags from TRACKD_DAEMON_ARGS)"
        env_parser.parse_args(env_args)
    args = build_parser().parse_args([*env_args, *(sys.argv[1:] if argv is None else argv)])
    handler: logging.Handler = (
        _LogFile(args.log_file, maxBytes=args.log_max_bytes, backupCount=1) if args.log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("trackd")
    root.addHandler(handler)
    root.setLevel(args.log_level)
    logger = logging.getLogger("trackd.daemon")
    try:
        # Chosen (and uvloop imported) before anything starts: a bad TRACKD_LOOP left a traceback
        # in the log and exit code 1, which read like a crash.
        loop, _ = loop_factory(args.loop)
    except ValueError as exc:
        return _refuse(logger, f"Cannot start: {exc}", USAGE_EXIT_CODE)
    paths = default_paths(args.socket)
    # The advice names what chose the path: by hand with --socket, "set TRACKD_SOCKET" was wrong.
    problem = socket_path_problem(paths.socket, setting=SOCKET_OPTION if args.socket is not None else SOCKET_ENV)
    if problem is not None:
        return _refuse(logger, f"Cannot start on {paths.socket}: {problem}.", 1)
    config = DaemonConfig(
        paths=paths,
        loop=loop,
        max_age=args.max_age,
        max_records=args.max_records,
        max_open_files=args.max_open_files,
        max_connections=args.max_connections,
        max_events_per_second=args.max_events_per_second,
        idle_timeout=args.idle_timeout,
        log_file=os.path.abspath(args.log_file) if args.log_file else None,
    )
    # What the daemon imported at start lives until it exits: not worth a look at every full collection.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    server = Server(config)
    try:
        server.run()
    except AlreadyRunning as exc:
        logger.info("Not starting: %s", exc)
        print(f"trackd: {exc}", file=sys.stderr)
        return ALREADY_RUNNING_EXIT_CODE
    except PermissionError as exc:
        return _refuse(logger, f"Cannot start: {exc}", 1)
    except CannotStart as exc:
        return _refuse(logger, f"Cannot start on {paths.socket}: {exc}.", 1)
    # Shutdown gave up on what the batcher still holds (its timeout ran out: a full disk). Those
    # events were never acknowledged, so their clients send them again; the exit code and the
    # report say so, for a supervisor and for `trackd daemon stop` (not this process's parent).
    unwritten = server.unwritten_at_exit
    try:
        write_exit_report(paths, pid=server.pid, unwritten=unwritten)
    except OSError as exc:
        logger.warning("Could not write the exit report %s: %s", paths.exit_report, exc)
    return UNWRITTEN_EXIT_CODE if unwritten else 0


def _refuse(logger: logging.Logger, message: str, code: int) -> int:
    """Log why the daemon does not start, say it on stderr in one line (a client that started it
    quotes its log's last line), and return the exit code."""
    logger.error("%s", message)
    print(f"trackd: {message}", file=sys.stderr)
    return code
