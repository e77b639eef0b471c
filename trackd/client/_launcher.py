"""Starting a daemon when none answers: the client and ``trackd daemon start`` both use this.

The client never imports the daemon; it starts ``python -m trackd.daemon`` as a detached process.
When several processes find no daemon at once, one of them starts it (``_starting_turn``), and
should two start anyway, the daemon's lock file lets exactly one of them run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, NamedTuple
from pathlib import Path

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator

from .._paths import (
    ALREADY_RUNNING_EXIT_CODE, DaemonPaths, daemon_lock, default_paths, ensure_private_directory, read_exit_report,
    socket_path_problem,
)
from .._peer import connect
from ..errors import DaemonUnavailable
from ._fork_hold import HELD_ACROSS_FORK
from ._transport import end_connection, gave_up_error

# A daemon the client starts exits after this long without clients, so no process lingers for
# ever after a training job.
AUTOSTART_IDLE_TIMEOUT = 600.0
# A daemon killed by a signal before it answered (the OOM killer, someone's `kill -9`, a crash) is
# started again, after a pause that doubles from RESTART_DELAY: a client gave up at the first such
# death ("exited with code -9"), its daemon healthy the next time. One stopped before it answered
# this client (`trackd daemon stop` or a SIGTERM landing on a daemon just started, which may have
# served others already) is started again at once: the client gave up, "none could be started",
# and a short job spooled all it logged. Up to this many such starts in all, within the start's
# timeout, and within one connect attempt of a client (whose daemon may answer the start's probe and
# be gone by its handshake: see SenderConnect._start_and_shake_hands, which passes the count on).
# One that exits with a code and no exit report (a bad flag) said why, and would say it again.
MAX_ENDED_STARTS = 3
RESTART_DELAY = 0.25
# How long a client waits for the daemon it started, which answered the start's probe and was gone
# by the handshake, to exit and be reaped, to tell from its exit status how it ended. Its socket
# refuses connections once the kernel closed it, before its parent can reap it: one SIGKILLed there
# had no exit status yet, and was said to have been stopped (6 of 6 times).
REAP_WAIT = 1.0


def daemon_answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect(probe, str(path), timeout)
        return True
    except OSError:
        return False
    finally:
        end_connection(probe)  # a child forked meanwhile must not hold the daemon a connection


def spawn_daemon(paths: DaemonPaths, *, idle_timeout: float | None = AUTOSTART_IDLE_TIMEOUT, extra_args: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start a detached daemon that logs to ``paths.log``; return its process. OSError when it
    cannot listen there (a socket path too long) or its folder is refused (PermissionError).

    ``idle_timeout`` None passes no --idle-timeout: the daemon takes TRACKD_DAEMON_ARGS's, or its
    default (`trackd daemon start`, whose flags leave that variable in force where not given)."""
    problem = socket_path_problem(paths.socket)
    if problem is not None:
        raise OSError(problem)
    ensure_private_directory(paths.directory)
    args = [
        sys.executable, "-m", "trackd.daemon",
        "--socket", str(paths.socket),
        "--log-file", str(paths.log),
        *(["--idle-timeout", str(idle_timeout)] if idle_timeout is not None else []),
        *(extra_args or []),
    ]
    # Held while subprocess is imported (only when a daemon must be started: it costs every process
    # import time) and while Popen starts the daemon: os.fork() in this process (a DataLoader
    # worker, a multiprocessing child) waits for both. A worker forked in the import waited for ever
    # at its own first import of subprocess; one forked in Popen (the training loop starts its
    # workers right after start_run, while the sender thread starts the daemon) kept a copy of
    # Popen's error pipe for its life, and the sender thread waited for it: for ever with persistent
    # workers, its buffer full and the training loop blocked in log_metric. See _fork_hold.py.
    with HELD_ACROSS_FORK:
        import subprocess

        with open(os.devnull, "rb") as devnull_in, open(paths.log, "ab") as log:
            return subprocess.Popen(
                args,
                stdin=devnull_in,
                stdout=log,
                stderr=log,
                # Its own session: the training job's Ctrl-C or SIGTERM to its process group must not
                # stop the daemon that other jobs share.
                start_new_session=True,
                close_fds=True,
                # Not the job's folder, where ./mlruns usually is: a daemon that lives on would keep
                # that filesystem busy (no umount) after its clients stopped. Its paths are absolute.
                cwd="/",
            )


def wait_until_answering(
    paths: DaemonPaths, process: subprocess.Popen[bytes] | None, timeout: float, *, stop: Callable[[], bool] | None = None,
) -> bool:
    """Wait until a daemon answers on ``paths.socket``; False on timeout, or once ``stop()`` is true.

    ``process`` exiting early is fine when another daemon won the start race; waiting goes on
    until something answers, or until that daemon lets its lock go without answering (it was
    shutting down: its idle timeout, `trackd daemon stop`), when nothing will answer.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline and not (stop is not None and stop()):
        if daemon_answers(paths.socket, timeout=0.5):
            return True
        code = process.poll() if process is not None else None
        if code not in (None, ALREADY_RUNNING_EXIT_CODE):
            return False  # it failed to start, or ended (start_and_wait tells which); no other daemon is coming
        if code == ALREADY_RUNNING_EXIT_CODE and _lock_is_free(paths) and not daemon_answers(paths.socket, timeout=0.5):
            return False  # the daemon that held the lock exited without a successor: start_and_wait starts one
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return False


class Started(NamedTuple):
    """What ``start_and_wait`` did: the last process it started, whether a daemon answered, and
    how many of the processes it started were killed by a signal, stopped, or exited with an error
    code (``crashed``) before one answered."""

    process: subprocess.Popen[bytes] | None  # None: another process started the daemon that answers
    answered: bool
    killed: int
    stopped: int
    crashed: int = 0

    @property
    def ended(self) -> int:
        """How many daemons it started ended before one answered, however they ended."""
        return self.killed + self.stopped + self.crashed


def was_stopped(paths: DaemonPaths, process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process``, a daemon, exited after a graceful shutdown (`trackd daemon stop`, a SIGTERM,
    its idle timeout): it left its exit report. One that exited with a code before it ran (a bad flag,
    even --help's 0) left none."""
    code = process.poll()
    return code is not None and code >= 0 and read_exit_report(paths, process.pid) is not None


def start_and_wait(
    paths: DaemonPaths, timeout: float, *, idle_timeout: float | None = AUTOSTART_IDLE_TIMEOUT, extra_args: list[str] | None = None,
    stop: Callable[[], bool] | None = None, earlier: Started | None = None,
) -> Started:
    """Start a daemon and wait until one answers, or (``stop``) until ``stop()`` is true.

    One process at a time starts a daemon (``_starting_turn``); the others wait for the daemon it
    starts (``Started.process`` None). Eight benchmark processes finding no daemon at once started
    eight, seven of which imported the whole daemon (~0.15 s of CPU each) only to exit "already
    running", on a machine whose cores the processes themselves needed.

    A daemon that is shutting down still holds the socket's lock for a while after it stopped
    listening (its idle exit, or `trackd daemon stop` writing what it holds): the process started
    then exits "already running", and once that daemon has gone nothing would answer. A job started
    in that window waited its whole connect timeout and failed ("none answered within 10 s and
    none could be started"), so a daemon is started again once the lock is free.

    A daemon killed by a signal before it answered is started again too, after RESTART_DELAY
    (doubling), unless one answers by then, and so is one stopped before it answered (at once: it
    ran, and may have served other clients; `trackd daemon stop` is followed by a new daemon):
    at most MAX_ENDED_STARTS starts in all. When many clients start at once, only the one whose
    process won the lock sees it killed or stopped (the others' exit "already running" and wait for
    the lock to be free, as above), so each client starts at most that many more, never one a tick.
    ``earlier`` counts those a client's connect attempt started before this start (gone by its
    handshake): the bound is the attempt's, and so are the counts returned. The last one's exit
    with an error code (a bad flag) is counted too, for the error's count of starts.
    """
    killed, stopped, crashed = (earlier.killed, earlier.stopped, earlier.crashed) if earlier else (0, 0, 0)

    def result(process: subprocess.Popen[bytes] | None, answered: bool) -> Started:
        return Started(process, answered, killed, stopped, crashed)

    deadline = time.monotonic() + timeout
    problem = socket_path_problem(paths.socket)
    if problem is not None:
        raise OSError(problem)
    ensure_private_directory(paths.directory)
    with _starting_turn(paths, deadline, stop) as turn:
        if not turn or daemon_answers(paths.socket, timeout=0.5):
            # Another process started it (or is still at it when the time ran out).
            return result(None, daemon_answers(paths.socket, timeout=0.5))
        process = spawn_daemon(paths, idle_timeout=idle_timeout, extra_args=extra_args)
        delay = RESTART_DELAY
        while not wait_until_answering(paths, process, deadline - time.monotonic(), stop=stop):
            if stop is not None and stop():
                return result(process, False)
            code = process.poll()
            if code is not None and code < 0:
                killed += 1
                if killed + stopped + crashed >= MAX_ENDED_STARTS or time.monotonic() + delay >= deadline:
                    return result(process, False)
                time.sleep(delay)
                delay *= 2
                if daemon_answers(paths.socket):
                    return result(process, True)  # another start answered meanwhile
            elif code != ALREADY_RUNNING_EXIT_CODE and was_stopped(paths, process):
                stopped += 1
                if killed + stopped + crashed >= MAX_ENDED_STARTS or time.monotonic() >= deadline:
                    return result(process, False)
            elif code != ALREADY_RUNNING_EXIT_CODE or time.monotonic() >= deadline:
                crashed += code not in (None, 0, ALREADY_RUNNING_EXIT_CODE)  # (--help's 0 is no error)
                return result(process, False)
            process = spawn_daemon(paths, idle_timeout=idle_timeout, extra_args=extra_args)
        return result(process, True)


@contextlib.contextmanager
def _starting_turn(paths: DaemonPaths, deadline: float, stop: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Yield True holding the lock that lets one process at a time start a daemon, or False once
    a daemon answers (another process started it), ``deadline`` passes or ``stop()`` is true.

    A POSIX record lock (``lockf``), not ``flock``: a child forked while the sender thread held
    it does not inherit it, so a DataLoader worker living on cannot keep every later start waiting.
    The kernel drops it when its holder dies.
    """
    fd = os.open(paths.starting, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        delay = 0.005
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:  # EACCES or EAGAIN: another process is starting one
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            else:
                yield True
                return
            if daemon_answers(paths.socket, timeout=0.5) or time.monotonic() >= deadline or (stop is not None and stop()):
                yield False
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    finally:
        os.close(fd)  # releases the lock, if it was taken


def _lock_is_free(paths: DaemonPaths) -> bool:
    """Whether no daemon holds the socket's lock (taken and released at once, see ``daemon_lock``)."""
    with daemon_lock(paths) as free:
        return free


class DaemonCannotStart(DaemonUnavailable):
    """Starting a daemon failed in a way that starting it again at once would repeat: its folder
    is refused (a socket straight in /tmp), or it exited before it answered (a bad flag in
    TRACKD_DAEMON_ARGS or TRACKD_LOOP, a store it may not use), or every daemon started was killed,
    stopped or crashed before it answered (MAX_ENDED_STARTS)."""


class DaemonStoppedStarting(DaemonCannotStart):
    """The daemons started were stopped (`trackd daemon stop`, a SIGTERM) before they answered this
    process, the last one too: they ran, so "none could be started" is not said of them."""


# How the count of each way a daemon ended is said (``Started``'s fields), in this order.
_ENDED_WORDS = {"killed": "killed", "stopped": "stopped", "crashed": "exited with an error"}


def _ended_starts(started: Started, last: str) -> str:
    """How the daemons this client started ended, when it started more than one: " (3 starts, each
    stopped)", " (3 starts, 1 killed, 2 stopped)", the way the last one ended (``last``, a count of
    ``Started``) named last."""
    if started.ended <= 1:
        return ""
    counts = {how: getattr(started, how) for how in _ENDED_WORDS}
    if counts[last] == started.ended:
        return f" ({started.ended} starts, each {_ENDED_WORDS[last]})"
    order = [how for how in _ENDED_WORDS if how != last and counts[how]] + [last] * bool(counts[last])
    return f" ({started.ended} starts, {', '.join(f'{counts[how]} {_ENDED_WORDS[how]}' for how in order)})"


def start_daemon(
    socket_path: Path, *, timeout: float, stop: Callable[[], bool] | None = None, earlier: Started | None = None,
) -> Started:
    """Start a daemon for ``socket_path`` and wait until it answers; raises DaemonUnavailable
    (DaemonCannotStart when it could not be started, its folder is refused, or it exited first:
    with the last line of its log). ``earlier``: this connect attempt's last start, whose daemon
    answered and was gone by the handshake (``gone_before_handshake``); its counts go on.

    ``stop``: the sender's question whether to give the daemon up (a bounded flush ran out, the
    client closes). A start waits up to ``timeout`` (TRACKD_CONNECT_TIMEOUT) for another process
    holding the start lock: the sender thread sat in it while exit gave the daemon up, so nothing
    moved its events to the spool file, and exit said they "are lost".
    """
    paths = default_paths(socket_path)
    try:
        started = start_and_wait(paths, timeout, stop=stop, earlier=earlier)
    except PermissionError as exc:
        raise DaemonCannotStart(f"Cannot start a trackd daemon for {paths.socket}: {exc}") from exc
    except OSError as exc:  # its folder cannot be made (a file in the way), the fork failed: not soon again
        raise DaemonCannotStart(f"Could not start a trackd daemon for {paths.socket}: {exc}.") from exc
    process, answered = started.process, started.answered
    if process is not None and process.poll() is None:
        _reap_when_it_exits(process)  # answering, or still starting when ``stop`` ended the wait
    if answered:
        return started
    if stop is not None and stop():
        raise gave_up_error(socket_path)
    if process is None:
        # "A trackd daemon was started ... see its log" was said of a start this process never
        # made: another process held the start lock all along, and started none.
        raise DaemonUnavailable(
            f"No trackd daemon answers at {paths.socket}: another process holds the lock that lets one process at a "
            f"time start it ({paths.starting}), and none answered within {timeout:g} s."
        )
    code = process.poll()
    if code not in (None, ALREADY_RUNNING_EXIT_CODE):
        raise _ended_error(paths, started, last="stopped" if was_stopped(paths, process) else "killed" if code < 0 else "crashed")
    raise DaemonUnavailable(
        f"A trackd daemon was started for {paths.socket} but did not answer within {timeout:g} s; see {paths.log}."
    )


def gone_before_handshake(
    socket_path: Path, started: Started, *, shutting_down: bool, stop: Callable[[], bool] | None = None,
) -> tuple[Started, DaemonCannotStart]:
    """``started`` (its process this client's), whose daemon answered the start's probe and was gone by
    the client's handshake (`trackd daemon stop` landing in between, a kill, a crash), with that daemon
    counted among those that ended before they answered, as the facts say: stopped when it said so
    (it refused the handshake as ``shutting_down``, or left its exit report, or exited 0), killed
    when its exit status names a signal, crashed when it names another code. With the error to give
    up with, should the client start no more (MAX_ENDED_STARTS counted): a stop's is not "none
    could be started".

    Its exit status is waited for, up to REAP_WAIT (less once ``stop()`` is true: the sender's
    question, as in ``start_daemon``): its socket closes before it can be reaped. One still running
    then closed its socket and lives on: it is shutting down (stopped)."""
    assert started.process is not None
    paths = default_paths(socket_path)
    code = None if shutting_down else _exit_status(started.process, stop)
    if code is not None and code < 0:
        how = "killed"
    elif code in (None, 0, ALREADY_RUNNING_EXIT_CODE) or read_exit_report(paths, started.process.pid) is not None:
        # (ALREADY_RUNNING: the daemon that answered was another start's, which went away, as before.)
        how = "stopped"
    else:
        how = "crashed"
    started = started._replace(answered=False, **{how: getattr(started, how) + 1})
    return started, _ended_error(paths, started, last=how)


def _exit_status(process: subprocess.Popen[bytes], stop: Callable[[], bool] | None) -> int | None:
    """``process``'s exit status, waiting up to REAP_WAIT for it (here, or in the thread that reaps it,
    ``_reap_when_it_exits``: poll() says None while that thread waits), less once ``stop()`` is
    true; None if it still runs."""
    import subprocess  # (imported when the process was started)

    deadline = time.monotonic() + REAP_WAIT
    while True:
        try:
            return process.wait(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline or (stop is not None and stop()):
                return process.poll()


def _ended_error(paths: DaemonPaths, started: Started, *, last: str) -> DaemonCannotStart:
    """Why the daemons ``started`` counts did not answer, the last one (``started.process``) named as
    it ended (``last``, a count of ``Started``: "stopped" also for one still shutting down), with
    the last line of the log."""
    assert started.process is not None
    said = f"{last_log_line(paths.log) or 'its log is empty'} (log: {paths.log})"
    starts = _ended_starts(started, last)
    if last == "stopped":
        return DaemonStoppedStarting(
            f"The trackd daemon started for {paths.socket} was stopped (`trackd daemon stop`, a SIGTERM) before it "
            f"answered this process{starts}: {said}."
        )
    code = started.process.poll()
    assert code is not None
    return DaemonCannotStart(f"The trackd daemon started for {paths.socket} {how_it_ended(code)} before it answered{starts}: {said}.")


def how_it_ended(code: int) -> str:
    """"exited with code 2", or "was killed by SIGKILL (signal 9)" for a Popen return code below 0."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "a signal"
    return f"was killed by {name} (signal {-code})"


def _reap_when_it_exits(process: subprocess.Popen[bytes]) -> None:
    """Wait for the daemon in a thread, so that when it exits (idle, or `trackd daemon stop`) it
    does not stay a zombie child of the training process, which `trackd daemon stop` in that
    process took for a daemon still running."""
    import threading

    threading.Thread(target=process.wait, name="trackd-daemon-reaper", daemon=True).start()


def last_log_line(path: Path) -> str:
    """The last non-empty line of the daemon's log (what an early exit said), or ""."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")
