"""The spool files' descriptors a forked child must close: a flock belongs to the open file, which
a fork shares with the child (O_CLOEXEC closes it at an exec only), so a child that kept one kept
its parent's lock for its whole life.

The sender's own spool file is closed by its at-fork step (``Spill.abandon``); the spools this
process delivers (``_spool._locked``) and the sender's own one it reads to resend (``Spool.reader``)
are in ``HELD``, closed here. A descriptor being opened or
closed has no number the child can trust (``OPENING``): it is found by the file's path instead.

In the child, every copy known by its number is closed first, then those found by path, and only
then do the senders make descriptors of their own (a wake pipe): this module's one at-fork hook runs
the senders' steps (``on_fork_in_child``) in that order. A close by path ran first, in its own hook,
and freed the number of a copy another sender closed by number later in its: a sender forked before
it had made its wake pipe there, which that close took from it (two senders shared one pipe end).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

# A descriptor being opened or closed (os.open or os.close runs, the GIL released): a child forked
# then may or may not have it, under a number the parent has not stored yet or may have reused.
OPENING = -2


class Held:
    """A spool file's descriptor that ``_locked`` or a ``Spool.reader`` holds (its real path, to find
    it while it is ``OPENING``); -1 once closed, or once a forked child closed its copy."""

    __slots__ = ("fd", "real_path")

    def __init__(self, fd: int, real_path: str) -> None:
        self.fd = fd
        self.real_path = real_path


# The spool files ``_locked`` holds open (and locked, once it has the lock) in this process, and
# those a sender reads to resend them (``Spool.reader``).
HELD: set[Held] = set()

# In a forked child's at-fork hook: the real paths whose copies are closed once every copy known by
# its number is (see close_copy).
_BY_PATH: set[str] = set()

# (close their copies, then make their own descriptors) of the senders, for a forked child (_sender.py).
_STEPS: list[tuple[Callable[[], None], Callable[[], None]]] = []


def hold(real_path: str) -> Held:
    """A descriptor about to be opened on ``real_path``: known to a forked child's hook from now on
    (``OPENING``, found by that path, until its number is stored in it) until ``release``."""
    held = Held(OPENING, real_path)
    HELD.add(held)
    return held


def release(held: Held) -> None:
    """Close ``held``'s descriptor (``OPENING`` while the close runs) and forget it; in a forked
    child whose hook closed its copy already (-1), forget it only."""
    try:
        if held.fd >= 0:
            fd, held.fd = held.fd, OPENING
            try:
                os.close(fd)
            finally:
                held.fd = -1
    finally:
        HELD.discard(held)


def on_fork_in_child(close_copies: Callable[[], None], then: Callable[[], None]) -> None:
    """Have a forked child run ``close_copies`` (closing by number, and by path through
    ``close_copy``) before any copy is closed by its path, and ``then`` once all are."""
    _STEPS.append((close_copies, then))


def _after_fork_in_child() -> None:
    """Every step, in order, whatever an earlier one raised; then the first exception raised.

    A KeyboardInterrupt (a Ctrl-C the child got while it was forked, where trackd does not block
    SIGINT across fork) raised by the first step skipped every sender's closes: the child kept its
    copies of its parent's spool files, and their locks, for its whole life.
    """
    first: BaseException | None = None
    for step in (close_held_in_child, *(close for close, _ in _STEPS), close_by_path_in_child, *(then for _, then in _STEPS)):
        try:
            step()
        except BaseException as exc:  # raised once all ran
            first = first or exc
    if first is not None:
        raise first


def close_held_in_child() -> None:
    """A forked child never delivers its parent's spools: close its copies of those being delivered.

    A flock belongs to the open file, which a fork shares with the child (O_CLOEXEC closes it at
    an exec only): a worker forked while a background delivery held an exited process's spool (a
    DataLoader's workers, a Pool's) held its lock for the worker's whole life. Every `trackd sync`
    said that spool's "process is still running", and background deliveries skipped it, until the
    workers exited. The child's copy is closed only: the parent's delivery keeps its lock.
    """
    for held in list(HELD):
        close_copy(held.fd, held.real_path)
        held.fd = -1
    HELD.clear()


def close_copy(fd: int, real_path: str) -> None:
    """In a forked child's at-fork hook: close its copy of ``fd``, open on ``real_path``
    (OPENING: by that path, once every copy known by its number is closed)."""
    if fd == OPENING:
        _BY_PATH.add(real_path)
    elif fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def close_by_path_in_child() -> None:
    """Close the copies ``close_copy`` found no number for (see close_copies)."""
    while _BY_PATH:
        close_copies(_BY_PATH.pop())


def close_copies(real_path: str) -> None:
    """In a forked child: close the descriptors open on ``real_path`` (Linux's /proc/self/fd; none
    elsewhere). For the instant an open or close was under way in the parent at the fork: the
    number is unknown, or may name another file by now. Reads no file system but /proc.

    Any descriptor open on the file is closed: one a copy known by its number still held was
    closed again by that number, freed or made anew by then (hence close_by_path_in_child last).
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            if os.readlink(f"/proc/self/fd/{name}") in (real_path, f"{real_path} (deleted)"):
                os.close(int(name))


os.register_at_fork(after_in_child=_after_fork_in_child)
