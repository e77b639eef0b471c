"""A process held by a pidfd, so that a signal meant for it never reaches another that took its pid.

A pid names whichever process has it now: once a process exits and is reaped, the system may give
its pid to any new one. A pidfd (``os.pidfd_open``, Linux 5.3+) names the one process it was opened
on; a signal sent through it to a process that has exited fails with ESRCH, whoever has the pid
since (``signal.pidfd_send_signal``, pidfd(2)). Where pidfds are missing (another system, an
older kernel, a seccomp filter refusing the calls) this falls back to the pid, as before.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from types import TracebackType

from ._peer import process_state


class PinnedProcess:
    """Process ``pid`` as it is when this is made: signalled through a pidfd where the system has them.

    A caller that proves which process it means (the kernel naming a socket's listener or a lock's
    holder) makes this first and proves it again after (``pinned``): the proof then names the
    process the pidfd holds, unless that one has exited, which no signal through it can reach.
    """

    __slots__ = ("_fd", "pid")

    def __init__(self, pid: int) -> None:
        """Raises ProcessLookupError when no process has ``pid``."""
        self.pid = pid
        self._fd: int | None = None
        opener = getattr(os, "pidfd_open", None)
        if opener is None or not hasattr(signal, "pidfd_send_signal"):
            return
        try:
            self._fd = opener(pid)
        except ProcessLookupError:
            raise
        except OSError:
            pass  # ENOSYS (a kernel before 5.3), EPERM (a seccomp filter): the pid alone, as before

    @property
    def pinned(self) -> bool:
        """Whether signals go through a pidfd (False: by pid, which another process may have taken)."""
        return self._fd is not None

    def signal(self, signum: int) -> bool:
        """Send ``signum``; False when the process has exited (nothing was signalled)."""
        try:
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def exited(self) -> bool:
        """Whether the process has exited, also while it waits, a zombie, for its parent to reap it
        (a daemon a client started is that client's child): a pidfd turns readable then. By pid,
        another process given the pid since passes for it."""
        if self._fd is not None:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            return bool(poller.poll(0))
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return process_state(self.pid)[0] == "Z"

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PinnedProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
