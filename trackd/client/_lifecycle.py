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
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


def _new_lock_in_child() -> None:
    global SENDERS_LOCK
    SENDERS_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_in_child)

# Called with the run status before clients close at exit or on SIGTERM (the fluent API ends its runs).
EXIT_HOOKS: list[Callable[[str | None], None]] = []


def close_all_clients() -> None:
    """At interpreter exit, deliver what every open client accepted (bounded by TRACKD_EXIT_TIMEOUT).

    Each sender is closed once (a flush bounded by its exit timeout), then the clients are marked
    closed, which no longer waits: a later log call raises ClientClosedError instead of buffering
    events nobody would deliver.
    """
    with SENDERS_LOCK:
        senders = list(SENDERS.values())
        SENDERS.clear()
    for sender in senders:
        sender.close()
    for client in list(LIVE_CLIENTS):
        client.close()


atexit.register(close_all_clients)


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (preemption, a launcher stopping its workers): end the runs KILLED, deliver, then die by the signal.

    Python's default for SIGTERM ends the process at once, skipping atexit, so everything still
    buffered would be lost. This handler is installed only where SIGTERM had its default action,
    and it re-raises the signal afterwards, so the exit status stays "killed by SIGTERM".
    """
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once
    try:
        for hook in EXIT_HOOKS:
            try:
                hook("KILLED")
            except Exception:  # a run that cannot be ended must not keep the events from delivery
                from ._outbox import log_exception

                log_exception("ending the runs on SIGTERM")
        close_all_clients()
    finally:
        os.kill(os.getpid(), signum)


def install_sigterm_handler() -> None:
    """Install _on_sigterm, from the main thread only and only over SIGTERM's default action
    (a framework's own handler installed earlier is kept); Client.__init__ calls it."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal works only in the main thread
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        pass  # not the main interpreter

