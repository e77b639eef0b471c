"""What a process going down on SIGTERM does to its multiprocessing children (a Pool's workers).

The SIGTERM handler (``_lifecycle._on_sigterm``) passes the signal on to them as it ends. Where
the process is PID 1 of its pid namespace, or the child of a container init that exits with it,
it then waits for them before it dies: its exit kills every other process of the namespace at once. Loaded with ``_lifecycle`` (by ``import trackd``),
so the handler imports nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

# A worker's own exit (its TRACKD_EXIT_TIMEOUT) is bounded; this is the margin for what it does
# after it: the spool write of what a stalled daemon did not take.
CHILDREN_SPOOL_MARGIN = 2.0
# How often the wait looks at the workers, and after how long it says whom it waits for.
CHILDREN_POLL_INTERVAL = 0.02
CHILDREN_WAIT_SAID_AFTER = 1.0


def multiprocessing_children() -> set[object]:
    """This process's live multiprocessing children, if it uses multiprocessing."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return set()
    try:
        return set(multiprocessing.active_children())
    except Exception:  # whatever state a signal found it in, the process goes down
        return set()


def signal_children(children: set[object], signum: int) -> None:
    """Send ``signum`` to these multiprocessing children of a process going down on it: its daemonic
    ones (a ``Pool``'s workers), and the others started while the handler delivered.

    A ``spawn`` or ``forkserver`` worker runs no at-fork hook in this process (a forked child dies
    by ``_going_down_by`` in its own): a process group's SIGTERM killed a ``Pool``'s workers, its
    thread started replacements while the handler delivered, and they waited for ever on the queue
    lock of a dead worker, orphans of the dead parent (2-5 per job in 7 jobs of 8). A daemonic
    child is one its parent ends as it exits (multiprocessing terminates them at a normal exit).
    Where the group's signal reached them too and they are still delivering (a stalled daemon),
    this is their second SIGTERM, which ends their wait and spools what is left (see
    _on_repeated_sigterm); it killed them at once, their buffers lost without a line. Signalled as
    the handler started and waited for (4cdcacf), the parent's longer life let a Pool's thread
    keep replacing workers, and one started as it died was left an orphan in half the runs of
    tests/test_fork_during_sigterm.py: the parent waits only where no child can outlive it
    (wait_for_children). A non-daemonic child the signal found is left alone, as it was; one whose
    start is under way now is missed.
    """
    for child in children:
        try:
            pid = getattr(child, "pid", None)
            if pid is not None:
                os.kill(pid, signum)
        except OSError:  # gone meanwhile
            pass


# The inits a container runs its entrypoint under (`docker run --init` runs tini as docker-init;
# podman's --init, catatonit): each exits as soon as its one child does, so that child's exit ends
# the container, and every process in it, as PID 1's own exit would.
CONTAINER_INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit"})


def children_die_with_this_process() -> bool:
    """Whether this process's exit kills its children at once: it is PID 1 of its pid namespace,
    or the child of a container init there that exits with it (CONTAINER_INITS).

    A container whose entrypoint is the job itself (`docker run image python train.py`, a
    Kubernetes pod's container without a shared pid namespace): `docker stop` SIGTERMs it alone,
    and as it exits the kernel SIGKILLs every other process of the namespace. Its Pool's workers,
    signalled a moment before, died in their delivery, their buffers lost without a line. Under
    `docker run --init`, tini passes the signal on to the job and exits when it does, which ends
    the namespace the same way. Here no child outlives the parent, so a wait for them cannot leave
    an orphan. Not detected: another init, a shell entrypoint, and a batch system that kills a
    job step's processes once its main task exits.
    """
    if os.getpid() == 1:
        return True
    if os.getppid() != 1:
        return False
    try:
        with open("/proc/1/comm") as comm:  # a host's PID 1 is systemd or init: never one of these
            return comm.read().strip() in CONTAINER_INITS
    except OSError:
        return False


def wait_for_children(
    children: set[object], signum: int, deadline: float, hurried_at: Callable[[], float | None], *, copy_grace: float
) -> None:
    """Wait until ``children``, just given ``signum``, have exited, or ``deadline`` (their own exit
    bound and CHILDREN_SPOOL_MARGIN) has passed. After CHILDREN_WAIT_SAID_AFTER, one line says whom
    it waits for.

    A second SIGTERM to this process (``hurried_at()``: when it came) is passed on to those still
    alive, as their own second (they stop waiting for the daemon and spool), and the wait ends
    CHILDREN_SPOOL_MARGIN after it. Not before ``copy_grace`` has passed since they were given
    the first: sooner, they take it for a copy of the first and ignore it (a second that came
    while this process delivered). Only these are waited for: a Pool's thread replaces the
    workers that exit, and a wait for the replacements would keep it replacing them. A child that
    ignores the signal is not waited for (such a wait held a job its exit timeout and 2 s more,
    silently, with a healthy daemon and nothing to deliver). The program's own signal handlers
    may raise here (a DataLoader's SIGCHLD handler raises when its workers die): the wait goes on.
    """
    waited = {child for child in children if not _ignores(child, signum)}
    said, start, passed_on = False, time.monotonic(), False
    while True:
        try:
            alive = [child for child in waited if child.is_alive()]  # type: ignore[attr-defined]
            now = time.monotonic()
            second = hurried_at()
            if second is not None and not passed_on and now - start >= copy_grace:
                passed_on = True
                signal_children(set(alive), signum)
                deadline = min(deadline, now + CHILDREN_SPOOL_MARGIN)
            if not alive or now >= deadline:
                return
            if not said and now - start >= CHILDREN_WAIT_SAID_AFTER:
                said = True
                from ._outbox import warn

                pids = ", ".join(str(getattr(child, "pid", "?")) for child in alive)
                warn(f"waiting up to {deadline - now:.0f} s more for {len(alive)} worker "
                     f"{'process' if len(alive) == 1 else 'processes'} (pid {pids}) to deliver what they "
                     "logged: this process's exit ends its container, and them with it.")
            time.sleep(CHILDREN_POLL_INTERVAL)
        except Exception:  # a handler of the program's raised, or multiprocessing's state is broken
            if time.monotonic() >= deadline:
                return
            try:
                time.sleep(CHILDREN_POLL_INTERVAL)
            except Exception:
                pass


def _ignores(child: object, signum: int) -> bool:
    """Whether ``child`` ignores ``signum`` (its SigIgn mask in /proc; False where /proc cannot say).

    Read only where /proc is this pid namespace's (a container's own): one of the host's names
    other processes by these pids (pid 2 there is kthreadd, which ignores every signal).
    """
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return False
        with open(f"/proc/{getattr(child, 'pid', 0)}/status") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False
