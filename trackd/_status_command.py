"""`trackd daemon status`: the daemon's counters, or why no daemon answers, with the spool folder's files either way."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._paths import SPOOL_DIR_ENV, DaemonPaths, daemon_lock, private_directory_problem, read_pid_file
from ._status_text import spool_lines, status_lines
from .client._control import listener_pid, query_status, stopped_words, without_socket, without_socket_words
from .client._spool_census import spool_census
from .client._transport import DaemonRefused
from .errors import DaemonUnavailable


def status_command(paths: DaemonPaths, spool_dir: Path, *, as_json: bool, spool_setting: str = SPOOL_DIR_ENV) -> int:
    """Print the daemon's status and the spool folder's files; ``spool_setting``: what chose ``spool_dir``
    (SPOOL_DIR_ENV or the CLI's SPOOL_DIR_OPTION), which a refusal of the folder names."""
    halted = _stopped_daemon(paths)
    if halted is not None:
        # Asked, it answers nothing until resumed: status waited out its 5 s handshake timeout first.
        print(f"trackd daemon pid {halted[0]} listens on {paths.socket} but does not answer; {halted[1]}", file=sys.stderr)
        _print_spool(spool_dir, as_json=as_json, setting=spool_setting)
        return 1
    try:
        status = query_status(paths.socket)
    except DaemonRefused as exc:
        # It said "not running ... a daemon holds the lock: it is starting, stopping or hung" of an
        # older trackd's daemon, which `trackd daemon stop` stops as any other.
        print(
            f"trackd daemon pid {listener_pid(paths.socket) or 'unknown'} runs on {paths.socket} but refused the status "
            f"request: {exc.reason}", file=sys.stderr,
        )
        _print_spool(spool_dir, as_json=as_json, setting=spool_setting)
        return 1
    except DaemonUnavailable as exc:
        # A stopped (SIGSTOP) or hung daemon still listens: the kernel queues the connection, and
        # names its pid, which `trackd daemon stop` would signal. It runs; it does not answer.
        pid = listener_pid(paths.socket)
        state = f"pid {pid} listens on {paths.socket} but does not answer" if pid else f"is not running on {paths.socket}"
        # Stopped, its process state says so: more than the lock it holds says ("starting,
        # stopping or hung").
        stopped = stopped_words(pid) if pid else None
        why = f"; {stopped}" if stopped else _why_silent(paths)
        socketless = None if pid else without_socket(paths)
        if socketless is not None:
            # Its socket file removed: it was said to be "not running ... starting, stopping or hung".
            state, why = f"is not reachable on {paths.socket}", f"; {without_socket_words(paths, socketless)}"
        print(f"trackd daemon {state} ({_reason(exc, paths.socket)}){why}", file=sys.stderr)
        _print_spool(spool_dir, as_json=as_json, setting=spool_setting)
        return 1
    census = spool_census(spool_dir, _written(status), setting=spool_setting)
    if as_json:
        print(json.dumps({**status, "spool": census.as_dict()}, indent=2, sort_keys=True))
        return 0
    print("\n".join([*status_lines(status), *spool_lines(census)]))
    return 0


def _written(status: dict[str, object]) -> dict[str, int]:
    """The highest batch the daemon wrote of each client its reply lists, by client id (an older
    daemon's reply names none): for the spool files whose every batch it wrote already.

    Only clients that left: a connected one's spool file is its own to send (and locked).
    """
    clients = status.get("clients")
    written: dict[str, int] = {}
    for client in clients if isinstance(clients, (list, tuple)) else ():
        if isinstance(client, dict) and not client.get("connected"):
            client_id, seq = client.get("client_id"), client.get("written_seq")
            if isinstance(client_id, str) and isinstance(seq, int) and not isinstance(seq, bool):
                written[client_id] = seq
    return written


def _print_spool(spool_dir: Path, *, as_json: bool, setting: str) -> None:
    """With no daemon answering: the spool files waiting, if any (--json: always, beside ``running: false``).

    Status said only "not running" beside a spool of 197 events that no process would deliver
    until one connected, or `trackd sync` ran.
    """
    census = spool_census(spool_dir, setting=setting)
    if as_json:
        print(json.dumps({"running": False, "spool": census.as_dict()}, indent=2, sort_keys=True))
    elif census.problem is not None or census.files:
        print("\n".join(spool_lines(census)))


def _why_silent(paths: DaemonPaths) -> str:
    """What the files beside a socket nothing answers on say: a daemon starting or stopping, or a stale pid file."""
    if not _private(paths):
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


def _private(paths: DaemonPaths) -> bool:
    """Whether the socket's folder exists and is one trackd trusts the files of."""
    return paths.directory.is_dir() and private_directory_problem(paths.directory) is None


def _stopped_daemon(paths: DaemonPaths) -> tuple[int, str] | None:
    """The daemon's pid and what its stopped process state says (``stopped_words``), when the pid
    file names a stopped process (Linux: /proc/<pid>/stat) that the kernel says listens on the
    socket; None otherwise, and where process states cannot be read.

    The pid file alone is a hint (after a kill -9 its pid may be a user's Ctrl-Z'd job's): the
    listener's pid proves it, and a stopped daemon's kernel still queues the probe and names it.
    """
    pid = read_pid_file(paths)
    if pid is None or pid <= 0 or stopped_words(pid) is None:
        return None
    if listener_pid(paths.socket, ask=False, timeout=1.0) != pid:
        return None
    words = stopped_words(pid)  # again: resumed meanwhile, it answers
    return None if words is None else (pid, words)


def _reason(exc: DaemonUnavailable, socket: Path) -> str:
    """Why no daemon answered, without the socket path the line names already: "not running on X
    (The trackd daemon at X is unreachable: ...)" said it twice."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return f"connecting failed: {cause.strerror}"
    return str(exc).replace(f"The trackd daemon at {socket} ", "it ", 1).rstrip(".")
