"""A lock every ``os.fork()`` in this process waits for, held by trackd's threads around work that a
forked child must not inherit half done.

A child starts with one thread, the one that forked, and inherits every lock as it was at the
fork: one another thread held stays held there for ever. Two things trackd's threads do leave
such a lock behind. Python takes a module's import lock while it imports the module, so a child
forked while the sender thread imported ``subprocess`` (the first time it starts a daemon)
waited for ever at its own first ``import subprocess``: a worker running a tool, trackd's git
tags, the child's own daemon start. And ``subprocess.Popen`` reads its error pipe until every
copy of the pipe's write end is closed, so a child forked while it ran kept the sender thread
waiting for as long as the child lived (``spawn_daemon``).

The ``before`` hook takes the lock in the thread that forks, so the fork waits for such work to
end (a few milliseconds), and both after-hooks release it. Popen's own fork (no ``preexec_fn``)
runs no at-fork hook, so the holder never waits for itself.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

HELD_ACROSS_FORK = threading.Lock()
os.register_at_fork(
    before=HELD_ACROSS_FORK.acquire, after_in_parent=HELD_ACROSS_FORK.release, after_in_child=HELD_ACROSS_FORK.release
)


def import_module(name: str) -> ModuleType:
    """``import name`` from any thread, with forks waiting until it is done (see above).

    A module loaded already costs a dictionary look-up: only a first import takes the lock.
    """
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if module is not None and not getattr(spec, "_initializing", False):
        return module
    with HELD_ACROSS_FORK:
        __import__(name)
        return sys.modules[name]
