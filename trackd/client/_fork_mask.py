"""SIGTERM and SIGINT blocked across fork() where trackd's SIGTERM handler runs, by at-fork hooks that run no Python.

A SIGTERM for a child still inside fork() (``Pool.terminate()`` just after the pool's thread
forked a replacement worker) waits until the child's at-fork hooks have made trackd's state its
own. Unblocked, it was lost when it came before CPython cleared the signals pending from the parent
(in ``PyOS_AfterFork_Child``): the worker lived on, and ``terminate()``, which joins its workers,
could wait for it for ever. When it came during the hooks, the handler ended the parent's runs
through the parent's copy of its sender, whose thread is not in the child, waited
TRACKD_EXIT_TIMEOUT and said "1 event is lost: the daemon ... did not answer" of a healthy daemon.
And in a process with a SIGTERM watcher (``_lifecycle._watch_sigterm``) it went into the parent's
wakeup pipe, which the child forgets in its hook, and made the parent's watcher SIGTERM the parent.
So the thread that forks blocks SIGTERM across fork(), and the child unblocks it once trackd's
other at-fork hooks have run (the block was set only where a watcher ran).

The hooks are libc's ``pthread_sigmask`` itself, bound by ``functools.partial``: C callables.
CPython runs a pending signal handler as it enters any Python function, an at-fork hook too, and
what a hook raises is only printed ("Exception ignored in", ``run_at_forkers`` in
Modules/posixmodule.c): a Ctrl-C that came while ``os.fork()`` ran raised its KeyboardInterrupt
inside trackd's hook, and the program forked on as if Ctrl-C never happened (about one Ctrl-C in
seven, in a loop forking children). The hook's body did not run either, so the main thread could
keep SIGTERM blocked for good. ``signal.pthread_sigmask`` runs pending handlers too, after it
changes the mask. Neither ``functools.partial``, nor ctypes calling a foreign function, nor
``run_at_forkers`` between two hooks runs a handler (unless a Python audit hook is installed:
ctypes audits each foreign call), so the KeyboardInterrupt is raised as ``os.fork()`` returns.
SIGINT is blocked with it for the child's sake: Ctrl-C goes to the whole foreground process group,
so a child being forked gets its own, and one that came while the child ran trackd's at-fork hooks
(Python functions) raised its KeyboardInterrupt inside them, where it was only printed, with
trackd's state half made its own (the hook stopped midway: the child could keep its parent's runs
as its own, for its exit to fail them). Blocked, it stays pending in the child, and the child drops
it (``sigtimedwait``) before its restore: raised as ``os.fork()`` returned, it unwound the parent's
code in the child (the child of an ``os.fork()`` ran the parent's exit, whose multiprocessing hook
SIGTERMed the parent's Pool workers, one of them holding the pool's queue lock: the parent waited
for ever at its own exit, seen in a chaos run). Without trackd the kernel restarts a fork that a
signal for the parent interrupts, and the child, made after the signal, never gets it: dropping
it is what a program sees without trackd. The parent gets its own Ctrl-C as its restore unblocks
it, raised as ``os.fork()`` returns (a C hook runs no handler).
The hooks were registered at ``import trackd``, in every process; now only once trackd installs
its SIGTERM handler (the first Client made in the main thread where SIGTERM had its default
action), which is what pays for importing ctypes (about 2 ms).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable

# sigset_t is 128 bytes in glibc and musl (1024 signals), 16 on FreeBSD and 4 on macOS: a buffer
# this size holds any of them, and libc's own sigemptyset and sigaddset lay the set out.
SIGSET_MAX_SIZE = 1024 // 8

# Held across fork(): trackd's SIGTERM handler's signal, and Ctrl-C's (see the docstring).
HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The hook that restores the forking thread's mask, in the parent and in the child; kept once
# registered, so a forked child that installs the handler again does not register the hooks twice
# (a second block would save the mask with SIGTERM in it, for the restore to keep).
_restore: Callable[[], object] | None = None


def hold_signals_across_forks() -> None:
    """Block SIGTERM and SIGINT in the thread that forks, from before each fork() until after it;
    in the child, until trackd's other at-fork hooks have run.

    The child's restore is an at-fork hook registered after those: they are registered as their
    modules load (``_lifecycle``, ``_fluent``, ``_launcher``, ``_sender``), which is before the
    first Client installs the handler and calls this, and a child runs its hooks in the order
    they were registered.
    """
    global _restore
    if _restore is None:
        hooks = _libc_hooks()
        block, _restore, drop_ctrl_c = hooks or (_block_held_signals_in_python, _restore_mask_in_python, _drop_ctrl_c_in_python)
        # Registered first, so the child runs it first: the child's Ctrl-C, pending, is dropped
        # before the restore would raise it (see the docstring).
        os.register_at_fork(after_in_child=drop_ctrl_c)
        os.register_at_fork(before=block, after_in_parent=_restore, after_in_child=_restore)


def _libc_hooks() -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]] | None:
    """``pthread_sigmask(SIG_BLOCK, {SIGTERM, SIGINT}, saved)``, ``pthread_sigmask(SIG_SETMASK, saved,
    NULL)`` and ``sigtimedwait({SIGINT}, NULL, {0, 0})`` (a no-op where libc has none: macOS) as C
    callables; None where ctypes or the first two are missing."""
    try:
        import ctypes

        # dlopen(NULL): the process's own symbols, libc's among them (Linux, macOS), from a PyDLL,
        # which holds the GIL through the call (a CDLL releases it, so another thread could fork
        # in between and overwrite `saved`).
        libc = ctypes.pythonapi
        pthread_sigmask, sigemptyset, sigaddset = (libc[name] for name in ("pthread_sigmask", "sigemptyset", "sigaddset"))
    except (ImportError, AttributeError, OSError):
        return None
    pthread_sigmask.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    sigemptyset.argtypes = [ctypes.c_void_p]
    sigaddset.argtypes = [ctypes.c_void_p, ctypes.c_int]
    held, saved = ctypes.create_string_buffer(SIGSET_MAX_SIZE), ctypes.create_string_buffer(SIGSET_MAX_SIZE)
    if sigemptyset(held) != 0 or any(sigaddset(held, int(signum)) != 0 for signum in HELD_SIGNALS):
        return None
    if pthread_sigmask(int(signal.SIG_BLOCK), None, saved) != 0:  # reads the mask, changes nothing
        return None
    drop_ctrl_c: Callable[[], object] = int  # a C callable that does nothing
    try:
        sigtimedwait = libc["sigtimedwait"]
    except AttributeError:
        pass
    else:
        sigtimedwait.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        ctrl_c = ctypes.create_string_buffer(SIGSET_MAX_SIZE)
        if sigemptyset(ctrl_c) == 0 and sigaddset(ctrl_c, int(signal.SIGINT)) == 0:
            # Returns at once, with the pending SIGINT taken, or -1 (EAGAIN) where none is pending.
            drop_ctrl_c = functools.partial(sigtimedwait, ctrl_c, None, (ctypes.c_long * 2)())
    return (
        functools.partial(pthread_sigmask, int(signal.SIG_BLOCK), held, saved),
        functools.partial(pthread_sigmask, int(signal.SIG_SETMASK), saved, None),
        drop_ctrl_c,
    )


# Where libc's functions cannot be called: Python hooks, which lose a Ctrl-C that comes as they
# are entered (see the docstring).
_mask_before_fork: set[int | signal.Signals] | None = None


def _block_held_signals_in_python() -> None:
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)


def _restore_mask_in_python() -> None:
    global _mask_before_fork
    if _mask_before_fork is not None:
        mask, _mask_before_fork = _mask_before_fork, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _drop_ctrl_c_in_python() -> None:
    if hasattr(signal, "sigtimedwait"):  # not on macOS
        signal.sigtimedwait([signal.SIGINT], 0)
