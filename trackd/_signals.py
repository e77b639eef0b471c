"""Signals that belong to the main thread: trackd's threads block them, its daemon unblocks them.

Python runs signal handlers only in the main thread, but the kernel hands a process-directed
signal to any thread that does not block it. One that lands on the sender thread only flags the
handler for the main thread, and a main thread blocked in C (a multiprocessing worker waiting on
its pool's queue lock) never returns to run it: `Pool.terminate()`'s SIGTERM then left workers
that had logged waiting for ever. With these blocked in trackd's threads, the kernel interrupts
the main thread's wait instead, and the handler runs.
"""

from __future__ import annotations

import signal

# The asynchronous signals a program may handle in Python (faults such as SIGSEGV go to the
# thread that caused them, and SIGKILL and SIGSTOP cannot be blocked).
MAIN_THREAD_SIGNALS = frozenset({
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGALRM, signal.SIGCHLD, signal.SIGWINCH,
})


def leave_signals_to_the_main_thread() -> None:
    """Block MAIN_THREAD_SIGNALS in the calling (non-main) thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)


def take_signals() -> None:
    """Unblock MAIN_THREAD_SIGNALS: a process started from a thread that blocked them (the
    daemon, started by a client's sender thread) inherits the mask through fork and exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MAIN_THREAD_SIGNALS)
