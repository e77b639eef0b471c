"""How trackd names a process that is one of many: its rank, its multiprocessing name, its command.

A job of 12 processes (4 ranks with 2 pool workers each) showed 12 `trackd daemon status` lines
told apart by pid alone, and its exit lines interleaved on the job's stderr without saying who
wrote them. Top level, beside ``_words.py``: the client words its own stderr lines with it and
`trackd daemon status` the clients the daemon read from /proc (``daemon/_identities.py``), so the
two say a rank the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

# The variables a launcher sets per process (torchrun, torch.distributed.launch, accelerate, and
# the README's own examples), as (variable, the words before its value).
RANK_VARIABLES = (("RANK", "rank"), ("LOCAL_RANK", "local rank"))
# A value shown longer than this is cut: a rank is a small number, whatever a variable holds.
MAX_RANK_CHARS = 16
# A command shown longer than this is cut, with "...": enough for the script and its first
# arguments, on a status line that also names the pid, the rates and the store.
MAX_COMMAND_CHARS = 60
# A multiprocessing name ("ForkPoolWorker-3", "Process-2", or one the program chose) is cut past this.
MAX_PROCESS_NAME_CHARS = 40


def rank_words(environ: Mapping[str, str]) -> str:
    """"rank 3", "rank 3, local rank 1", "local rank 1", or "" when neither is set (or empty).

    A local rank equal to the rank (one node) is said once.
    """
    values = [(words, _cut(environ.get(name, ""), MAX_RANK_CHARS)) for name, words in RANK_VARIABLES]
    (_, rank), (_, local_rank) = values
    if rank and local_rank == rank:
        values = values[:1]
    return ", ".join(f"{words} {value}" for words, value in values if value)


def short_command(argv: Sequence[str]) -> str:
    """A command line at a glance: its program's base name and its first arguments, at most
    MAX_COMMAND_CHARS characters, on one line ("python train.py --lr 0.1"); "" for an empty ``argv``."""
    if not argv:
        return ""
    words = [os.path.basename(argv[0]) or argv[0], *argv[1:]]
    # Whitespace collapsed: `python -c` code spans lines.
    return _cut(" ".join(" ".join(words).split()), MAX_COMMAND_CHARS)


def speaker() -> str:
    """Who says a stderr line of this process: "trackd", or, in a process that is one of many
    (RANK or LOCAL_RANK set, a multiprocessing child, a forked child), "trackd (rank 3, pid 1234)",
    "trackd (ForkPoolWorker-2, pid 1240)", "trackd (pid 1250)".

    Read at each line, not once: a forked child has another pid, and a program may set RANK
    after trackd was imported. An ``os.fork`` worker's line read as its parent's ("trackd: ...").
    """
    named = [rank_words(os.environ)]
    if in_multiprocessing_child():
        named.append(_cut(sys.modules["multiprocessing"].current_process().name, MAX_PROCESS_NAME_CHARS))
    named = [words for words in named if words]
    if named:
        return f"trackd ({', '.join(named)}, pid {os.getpid()})"
    return f"trackd (pid {os.getpid()})" if _forked else "trackd"


# This process was forked (os.fork, the fork start method) from one that had loaded trackd.
_forked = False


def forked_child() -> bool:
    """Whether this process was forked from one that had loaded trackd (``os.fork``, a fork Pool's
    or a DataLoader's worker): one worker among others, whose parent says its own lines."""
    return _forked


def _note_fork() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_note_fork)


def in_multiprocessing_child() -> bool:
    """Whether multiprocessing started this process (a Pool's worker, a Process): not imported, it did not."""
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
