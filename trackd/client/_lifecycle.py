"""A client's lifecycle state, and what interpreter exit does to the clients still open.

This module is loaded by ``import trackd``; ``_client.py`` (the Client, its sender and everything
they import) loads only when the first Client is made. The exit hook is registered here, at
import, so it keeps its place among the program's own atexit hooks wherever the first Client is
made, and it needs no import at exit: a process that never made a Client has nothing to close.
"""

from __future__ import annotations

import atexit
import enum
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ._sigterm_children import (
    CHILDREN_SPOOL_MARGIN,
    children_die_with_this_process,
    multiprocessing_children,
    signal_children,
    wait_for_children,
)

if TYPE_CHECKING:
    from types import FrameType

    from ._client import Client
    from ._sender import Sender


class ClientState(enum.Enum):
    """A client's lifecycle (as httpx's ClientState)."""

    OPEN = 1
    CLOSED = 2


# Every open Client; Client.__init__ adds itself. Weak: a Client dropped without close() may go,
# because what it accepted lives in its sender, below.
LIVE_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()

# The open senders, by (store root, config): the Clients of one store and config share one buffer,
# thread and connection, so code that makes a client per call (``MlflowClient().log_metric(...)``)
# costs no thread and no daemon connection each. Held strongly until closed: what a Client
# accepted is delivered at exit even if the Client itself was dropped without close().
SENDERS: dict[tuple[object, ...], Sender] = {}
# Guards SENDERS and the senders' users together: a Client made while the last one of its store
# closes must not join the sender being closed. Reentrant for the SIGTERM handler, which may run
# while the main thread holds it; made anew in a forked child (another thread may have held it).
SENDERS_LOCK = threading.RLock()
# Senders whose close is under way (the last Client of a store closing, or exit): out of SENDERS,
# so no new Client joins them, but still closed by close_all_clients. A SIGTERM during that close's
# wait for a stalled daemon runs the handler, which found no sender and re-raised the signal: the
# process died with every event that close held, unspooled and unreported.
CLOSING: set[Sender] = set()


# The signal this process is going down by, from the moment _on_sigterm starts (it never returns:
# it re-raises the signal). A child forked meanwhile dies by it in its at-fork hook. A fork Pool's
# thread replaced the workers that a process group's SIGTERM (Slurm preemption, `kill -TERM
# -PGID`) had killed while the handler delivered: the new workers never got the signal, and they
# waited for ever on the queue lock of a dead worker, orphans of the dead parent (4 per job in 5
# jobs of 6). Without trackd's handler the parent dies at once and there is no such child.
_going_down_by: int | None = None


def _reset_in_forked_child() -> None:
    """Locks another thread may have held at the fork, the parent's SIGTERM watcher, and how a
    multiprocessing child will exit."""
    global SENDERS_LOCK, _SIGTERM_LOCK, closed_at_exit, _sigterm_held, _sigterm_pending, _going_down_by
    if _going_down_by is not None:
        signum, _going_down_by = _going_down_by, None
        _take_the_signal_going_down_with_parent(signum)
    SENDERS_LOCK = threading.RLock()
    _sigterm_held, _sigterm_pending = False, None  # the main thread's hold, if another thread forked
    _SIGTERM_LOCK = threading.Lock()
    closed_at_exit = False  # the child exits on its own
    # SIGTERM stays blocked until every trackd at-fork hook has run (see _fork_mask).
    _forget_watch_in_child()
    # A multiprocessing child (fork start method) runs its after-fork callbacks once it knows it is
    # one (Process._bootstrap): there, exit the way a multiprocessing child exits. Its parent loaded
    # multiprocessing.util before it forked (Process.start, a Pool); nothing is imported here: a
    # module another thread of the parent was importing at the fork stays locked in the child for
    # ever, and multiprocessing.util imports subprocess, which the sender thread imports when it
    # first starts a daemon: a child forked then (a loop forking beside a daemon restart) hung here.
    util = sys.modules.get("multiprocessing.util")
    register = getattr(util, "register_after_fork", None)  # None too while the parent imported it
    if register is not None:
        register(_AFTER_FORK_TOKEN, _prepare_forked_child)


def _take_the_signal_going_down_with_parent(signum: int) -> None:
    """Die by ``signum``, which the parent is dying by: as the child would had it existed when the
    signal came, and as it would without trackd's handler, which ends the parent at once.

    The kill comes first: SIGTERM stays blocked until trackd's at-fork hooks have run (_fork_mask),
    so it waits for them, and _on_repeated_sigterm, which a child inherits, lets it kill the child
    too if a Ctrl-C in this hook keeps the default from being restored here.
    """
    os.kill(os.getpid(), signum)
    signal.signal(signum, signal.SIG_DFL)


class _Token:
    """Something multiprocessing can hold a weak reference to (register_after_fork's key)."""


_AFTER_FORK_TOKEN = _Token()


def _prepare_forked_child(_token: object) -> None:
    prepare_multiprocessing_child()


os.register_at_fork(after_in_child=_reset_in_forked_child)

# Called with the run status before clients close at exit or on SIGTERM (the fluent API ends its runs).
EXIT_HOOKS: list[Callable[[str | None], None]] = []


# Exit (atexit, SIGTERM, a multiprocessing child's finalizer) has closed the clients: a thread
# still logging (a system-metrics monitor) gets its calls counted as late, not ClientClosedError
# in that thread, nor a new Client that nothing would ever close (see Client._check_run and
# _fluent.get_client).
closed_at_exit = False


def interpreter_exiting() -> bool:
    """Whether the process is exiting: its clients closed at exit, or its main thread done (atexit
    hooks run, or non-daemon threads are joined, only then); a bounded flush waits a total bound then."""
    return closed_at_exit or not threading.main_thread().is_alive()


def close_all_clients() -> None:
    """At interpreter exit, deliver what every open client accepted (bounded by TRACKD_EXIT_TIMEOUT).

    Each sender is closed once (a flush bounded by its exit timeout, then a final drain of what
    other threads logged meanwhile), then the clients are marked closed, which no longer waits.
    What other threads log after a sender's final drain is not delivered: it is counted, and one
    line at the end says how many events that was (nothing when there were none).
    """
    global closed_at_exit
    closed_at_exit = True
    with SENDERS_LOCK:
        senders = [*SENDERS.values(), *(sender for sender in CLOSING if sender not in SENDERS.values())]
        SENDERS.clear()
    for sender in senders:
        close_sender(sender, exiting=True)
    for client in list(LIVE_CLIENTS):
        client.close()
    if senders:
        from ._outbox import warn_late

        warn_late(sum(sender.take_late() for sender in senders), "exit")


atexit.register(close_all_clients)


def close_sender(sender: Sender, timeout: float | None = None, *, exiting: bool = False) -> None:
    """``sender.close()``, listed in CLOSING meanwhile: a SIGTERM handler running inside its wait
    closes it too (the close is reentrant), so what it holds is delivered or spooled before the
    process dies by the signal."""
    with SENDERS_LOCK:
        CLOSING.add(sender)
    try:
        sender.close(timeout, exiting=exiting)
    finally:
        with SENDERS_LOCK:
            CLOSING.discard(sender)


def prepare_multiprocessing_child() -> None:
    """In a process multiprocessing started, deliver at its exit as atexit would elsewhere.

    Its fork and forkserver children leave through os._exit, which skips atexit: a client made in
    the child after the fork lost everything it buffered, silently. multiprocessing runs its
    finalizers there instead, so one is registered, once per process, that notes whether the
    target raised and, in those children, does what atexit does (runs are ended, FAILED if it
    raised; clients deliver within TRACKD_EXIT_TIMEOUT); and the SIGTERM watcher below
    is started once the handler is ours. Called by Client.__init__ and, in a forked child, by the
    after-fork callback above.
    """
    global _prepared_pid
    from .._process_names import in_multiprocessing_child  # here: `import trackd` loads this module

    if not in_multiprocessing_child():
        return
    if _prepared_pid != os.getpid():
        _prepared_pid = os.getpid()
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _exit_multiprocessing_child, exitpriority=100)
    # Apart: a forked child gets here first from its after-fork callback, before its first
    # Client installed the handler the watcher is for.
    _watch_sigterm()


_prepared_pid = 0

# -- SIGTERM while the main thread waits in C -------------------------------------------------------
#
# A Python signal handler runs when the main thread next executes bytecode. A SIGTERM that arrives
# just before the main thread blocks in C (a pool worker taking its queue's lock, which its parent
# holds while it terminates the workers) leaves the handler pending and the thread blocked for
# ever: `with Pool(...)` hung in about one run in four of 40 pools whose workers had logged. In a
# multiprocessing child whose SIGTERM handler is ours, a watcher thread learns of each SIGTERM
# through the wakeup fd and, while the handler has not run, sends SIGTERM to the main thread
# again: that interrupts the wait (EINTR), and the handler runs, delivers and ends the process.
SIGTERM_NUDGE_INTERVAL = 0.1
MAX_SIGTERM_NUDGES = 50
_watch_fds: tuple[int, int] | None = None
_SIGTERM_LOCK = threading.Lock()


def _watch_sigterm() -> None:
    """Start the watcher, from the main thread, where SIGTERM is ours and no wakeup fd is set."""
    global _watch_fds
    if _watch_fds is not None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter
        previous = -2
    if previous != -1:  # someone else's (an event loop's): leave it alone
        if previous >= 0:
            signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    _watch_fds = (read_fd, write_fd)
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    from .._signals import start_without_signals

    start_without_signals(threading.Thread(
        target=_nudge_on_sigterm, args=(read_fd, main_thread), name="trackd-sigterm-watch", daemon=True
    ))


def _nudge_on_sigterm(read_fd: int, main_thread: int) -> None:
    nudges = 0
    while nudges < MAX_SIGTERM_NUDGES:
        try:
            signals = os.read(read_fd, 512)
        except OSError:
            return
        if not signals:
            return
        if signal.SIGTERM not in signals:
            continue
        while nudges < MAX_SIGTERM_NUDGES:
            time.sleep(SIGTERM_NUDGE_INTERVAL)
            # Under the lock _on_sigterm takes before it replaces itself: a nudge sent just after
            # that would be a repeat, which kills the process once the grace is over.
            with _SIGTERM_LOCK:
                if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
                    break  # it ran (and replaced itself), or the program replaced it
                nudges += 1
                try:
                    signal.pthread_kill(main_thread, signal.SIGTERM)
                except OSError:
                    return


def _forget_watch_in_child() -> None:
    """A forked child must not signal through its parent's watcher pipe."""
    global _watch_fds
    if _watch_fds is None:
        return
    read_fd, write_fd = _watch_fds
    _watch_fds = None
    try:
        current = signal.set_wakeup_fd(-1)
        if current != write_fd:
            signal.set_wakeup_fd(current)
    except ValueError:
        pass
    os.close(read_fd)
    os.close(write_fd)


def _exits_through_os_exit() -> bool:
    """Whether this multiprocessing child leaves through os._exit (fork, forkserver), skipping
    atexit. A spawn child leaves through sys.exit: atexit runs after its non-daemon threads are
    joined, where a finalizer ran before, and lost what those threads logged after it."""
    import multiprocessing

    method = getattr(multiprocessing.current_process(), "_start_method", None)
    return (method or multiprocessing.get_start_method(allow_none=True)) != "spawn"


# "FAILED" or "KILLED" when this multiprocessing child's target raised: the fluent exit hook reads
# it where sys.last_value (an uncaught exception's) is not set.
child_failure: str | None = None


def _exit_multiprocessing_child() -> None:
    global child_failure
    # The target's exception, if any, is being handled around the finalizers (Process._bootstrap
    # runs them in a finally): sys.last_value, which atexit's hook reads, is never set here.
    error = sys.exc_info()[1]
    if error is not None and not (isinstance(error, SystemExit) and error.code in (0, None)):
        child_failure = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
    if _exits_through_os_exit():
        _run_exit_hooks(child_failure)
        close_all_clients()
    # A spawn child goes on to sys.exit: atexit ends its runs and closes its clients after its
    # non-daemon threads are joined (a finalizer closing them here lost what those threads logged).


def _run_exit_hooks(status: str | None) -> None:
    """End the runs (the fluent API's hook) before the clients deliver."""
    for hook in EXIT_HOOKS:
        try:
            hook(status)
        except Exception:  # a run that cannot be ended must not keep the events from delivery
            from ._outbox import log_exception

            log_exception("ending the runs at exit")


# A SIGTERM this soon after the first is the same request delivered twice, not a second one: GNU
# `timeout` (and `kill pid; kill -- -pgid` in a harness script) sends its signal to the job and then
# to the job's process group, which holds the job, microseconds apart. Killing on that copy left
# about one job in eight of `xargs -P 8 timeout ...` with its run RUNNING and its last points unsent.
REPEATED_SIGTERM_GRACE = 0.5
_first_sigterm_at = 0.0
_first_sigterm_pid = 0  # the process that got it: a child forked meanwhile inherits _first_sigterm_at
# When the last SIGTERM this process counted came (the first, or the one that hurried it): a copy of
# either within the grace is ignored. A copy of the second counted as a third and killed at once,
# mid-spool: a Pool's terminate() gave its workers their first, waiting for a stopped daemon; a
# group's SIGTERM 2 s later their second; and their parent, going down on it, their copy of it
# (a chaos soak: 161 points of a worker lost without a line).
_last_sigterm_at = 0.0
# A second SIGTERM (after the grace) came while _on_sigterm delivered: the waits for the daemon end
# at once and what it has not acknowledged is spooled, then the process dies; a third kills at
# once. The second one killed at once, mid-spool: a process group's SIGTERM while the daemon was
# stalled reached a fork Pool's workers and their parent, and the parent, done with its own
# 10 s wait, passed the signal on to its daemonic workers as it ended, which were still in
# theirs: each lost the ~25,000 events its buffer held, without a line.
_hurried = False

# Whether the main thread is between queueing a run's creation (or its reopening) and putting it
# on the stack the exit hooks end, or between taking a run off that stack and queueing its end,
# and the SIGTERM that came meanwhile. The handler runs in the main thread, between any two of its
# bytecodes: there it ended the runs on the stack, not that one, and the run stayed RUNNING for
# ever (no will either: the will is added with the stack, and the client's close clears it).
# Ctrl-C did the same: its KeyboardInterrupt left start_run (or end_run) with the run on no stack.
_sigterm_held = False
_sigterm_pending: int | None = None


@contextmanager
def signals_held() -> Iterator[None]:
    """Main thread: a SIGTERM, or a SIGINT (Ctrl-C), that comes inside the block is handled as the block ends.

    SIGINT's Python handler (KeyboardInterrupt, or the program's own) is swapped for one that
    notes the signal, and called after the block; a SIGINT that is ignored or kills (SIG_DFL) is
    left as it is. Another thread needs no hold: the SIGTERM handler, in the main thread, waits
    for the fluent API's lock, which that thread holds while it starts a run, and Python raises
    KeyboardInterrupt in the main thread only.
    """
    global _sigterm_held, _sigterm_pending
    if _sigterm_held or threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupts: list[FrameType | None] = []  # the frame each SIGINT came in, as the handler would have had it
    on_sigint = signal.getsignal(signal.SIGINT)
    try:
        if callable(on_sigint):
            signal.signal(signal.SIGINT, lambda signum, frame: interrupts.append(frame))
    except ValueError:  # not the main interpreter
        on_sigint = None
    _sigterm_held = True
    try:
        yield
    finally:
        _sigterm_held = False
        if callable(on_sigint):
            signal.signal(signal.SIGINT, on_sigint)
        signum, _sigterm_pending = _sigterm_pending, None
        if signum is not None:
            _on_sigterm(signum, None)  # ends the runs KILLED and dies by the signal
        if interrupts and callable(on_sigint):
            # KeyboardInterrupt now: start_run ends the run it put on the stack KILLED as it leaves
            # (end_run has queued its end). The program's own handler gets the frame the signal
            # came in (None broke one that looked at it).
            on_sigint(signal.SIGINT, interrupts[0])


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (preemption, a launcher stopping its workers): end the runs KILLED, deliver, then die by the signal.

    Python's default for SIGTERM ends the process at once, skipping atexit, so everything still
    buffered would be lost. This handler is installed only where SIGTERM had its default action,
    and it re-raises the signal afterwards, so the exit status stays "killed by SIGTERM".

    As it ends, it passes the signal on to its daemonic multiprocessing children and those started
    meanwhile (see signal_children); where its exit kills them (PID 1 of its pid namespace, or
    under a container init), it then waits for them before it dies (see wait_for_children).
    """
    global _first_sigterm_at, _first_sigterm_pid, _last_sigterm_at, _sigterm_pending, _going_down_by, _hurried
    _going_down_by = signum  # held or not, the process dies by it (see signals_held)
    if _sigterm_held:
        _sigterm_pending = signum
        return
    with _SIGTERM_LOCK:  # (see _nudge_on_sigterm)
        _first_sigterm_at, _first_sigterm_pid, _hurried = time.monotonic(), os.getpid(), False
        _last_sigterm_at = _first_sigterm_at
        signal.signal(signum, _on_repeated_sigterm)
    children_before = multiprocessing_children()
    # How long to wait for the workers, where this process's exit kills them (None: no wait). Read
    # now: the senders are gone after close.
    bound = _exit_bound() if children_die_with_this_process() else None
    try:
        _run_exit_hooks("KILLED")
        close_all_clients()
    finally:
        # Those alive now (active_children() reaps the others, whose pids may be another's by now).
        children = {
            child for child in multiprocessing_children()
            if getattr(child, "daemon", False) or child not in children_before
        }
        signal_children(children, signum)
        if children and bound is not None:
            # After its own delivery, not alongside it: a worker that dies while the program's
            # code runs can raise in it (a DataLoader's SIGCHLD handler), and this wait goes on
            # through that. Under _on_repeated_sigterm still: a second SIGTERM hurries the workers.
            wait_for_children(
                children, signum, time.monotonic() + bound + CHILDREN_SPOOL_MARGIN, _second_sigterm_at,
                copy_grace=REPEATED_SIGTERM_GRACE,
            )
        with _SIGTERM_LOCK:
            signal.signal(signum, signal.SIG_DFL)
        _die_by(signum)


def _exit_bound() -> float:
    """The longest exit wait of this process's senders and of a client the environment configures
    (a worker's)."""
    with SENDERS_LOCK:
        bounds = [sender.config.exit_timeout for sender in (*SENDERS.values(), *CLOSING)]
    config = sys.modules.get("trackd.client._config")  # loaded: a Client installed the handler
    try:
        bounds.append(config.ClientConfig.from_env().exit_timeout if config is not None else 0.0)
    except Exception:  # a bad variable (the worker's own Client raised): the delivery must go on
        pass
    return max(bounds, default=0.0)


def _second_sigterm_at() -> float | None:
    """When the second SIGTERM came, if one did (see exit_hurried)."""
    return _last_sigterm_at if exit_hurried() else None


def _on_repeated_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM while _on_sigterm delivers: a copy (within the grace of the first, or of the
    second) is ignored, the second ends the waits for the daemon (what is left is spooled, see
    exit_hurried), a third kills at once.

    A child forked while its parent delivered inherits this handler, but the first SIGTERM was not
    its own: there the signal kills at once (it was ignored for 0.5 s after the parent's).
    """
    global _hurried, _last_sigterm_at
    if os.getpid() == _first_sigterm_pid:
        now = time.monotonic()
        if now - _last_sigterm_at < REPEATED_SIGTERM_GRACE:
            return  # a copy of the first, or of the second
        if not _hurried:
            _hurried, _last_sigterm_at = True, now
            return
    signal.signal(signum, signal.SIG_DFL)
    _die_by(signum)


def exit_hurried() -> bool:
    """Whether a second SIGTERM asked this process, going down on its first, to stop waiting for
    the daemon: the bounded flushes of its exit give up at once and spool what is left."""
    return _hurried and os.getpid() == _first_sigterm_pid


def _die_by(signum: int) -> None:
    """Re-raise ``signum``, its action already the default, so the process dies by it; as PID 1, exit 128 + signum.

    The kernel drops a signal whose action is the default when the init of a pid namespace sends
    it to itself: a container's entrypoint run without an init (`docker run image python
    train.py`). There the re-raised SIGTERM did nothing, so `docker stop` ended the runs KILLED
    and the job went on training, its later points dropped without a word, and exited 0. 143 is
    the status a shell, and Docker, report for a process killed by SIGTERM.
    """
    if os.getpid() == 1:
        # The runs are ended and the clients closed: atexit has nothing left to do, but the job's
        # own output still sits in Python's buffers, which os._exit does not flush.
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError, RuntimeError):  # closed, a broken pipe, a reentrant flush
                pass
        os._exit(128 + signum)
    os.kill(os.getpid(), signum)


def install_sigterm_handler() -> None:
    """Install _on_sigterm, from the main thread only and only over SIGTERM's default action
    (a framework's own handler installed earlier is kept); Client.__init__ calls it."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal works only in the main thread
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            # A forked child's SIGTERM and Ctrl-C wait until the child's state is its own (see _fork_mask).
            from ._fork_mask import hold_signals_across_forks

            hold_signals_across_forks()
    except ValueError:
        pass  # not the main interpreter

