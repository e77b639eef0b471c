"""Signals that belong to the main thread: trackd's threads block them, its daemon unblocks them,
and a wait that a handler's exception interrupts leaves its lock as it found it.

Python runs signal handlers only in the main thread, but the kernel hands a process-directed
signal to any thread that does not block it. One that lands on the sender thread only flags the
handler for the main thread, and a main thread blocked in C (a multiprocessing worker waiting on
its pool's queue lock) never returns to run it: `Pool.terminate()`'s SIGTERM then left workers
that had logged waiting for ever. With these blocked in trackd's threads, the kernel interrupts
the main thread's wait instead, and the handler runs.
"""

from __future__ import annotations

import signal
import threading

# The asynchronous signals a program may handle in Python (faults such as SIGSEGV go to the
# thread that caused them, and SIGKILL and SIGSTOP cannot be blocked).
MAIN_THREAD_SIGNALS = frozenset({
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGALRM, signal.SIGCHLD, signal.SIGWINCH,
})


def start_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with MAIN_THREAD_SIGNALS blocked from its first instruction (it inherits
    the mask of the thread that starts it, which is restored at once)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def take_signals() -> None:
    """Unblock MAIN_THREAD_SIGNALS: a process started from a thread that blocked them (the
    daemon, started by a client's sender thread) inherits the mask through fork and exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MAIN_THREAD_SIGNALS)


def wait_keeping_lock(cond: threading.Condition, timeout: float) -> None:
    """``cond.wait(timeout)``, whose lock the caller holds again however the wait ends.

    CPython runs a signal handler as a call returns, so one that raises (Ctrl-C's
    KeyboardInterrupt, a timeout's SIGALRM handler) can leave Condition.wait after it let the lock
    go and before it took it back: the caller's ``with cond`` then raised "RuntimeError: cannot
    release un-acquired lock" in place of the handler's exception.
    """
    try:
        cond.wait(timeout)
    except BaseException:
        if not cond._is_owned():  # type: ignore[attr-defined]
            cond.acquire()
        raise
