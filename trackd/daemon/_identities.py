"""Who a client process is, for `trackd daemon status`: its command, RANK and LOCAL_RANK, its parent.

Twelve processes of a job (4 ranks with 2 pool workers each) were 12 status lines told apart by pid
alone. The daemon reads what it shows from /proc, not from the client: a field added to ``Hello``
is a new protocol version (docs/protocol.md, Versioning), which a running daemon of the version
before refuses, so every client upgraded beside a running daemon would have had to wait for it to
be restarted. /proc/<pid>/cmdline and /proc/<pid>/environ are readable for a process of the same
uid, the only kind the daemon serves (its socket's modes and SO_PEERCRED keep others out).
environ is the environment the process was started with: a launcher's RANK, inherited by the pool
workers it forks, but not a RANK the program sets in ``os.environ`` itself.

Only a peer the kernel names with the pid its Hello gives is read: a process delivering another's
spool file (`trackd sync`, a background delivery) says the exited process's Hello, and a client
in another pid namespace is another pid here. Read in a thread of its own: reading another
process's cmdline or environ takes that process's memory-map lock, which a process stuck in a
page fault (a hung NFS mount) can hold for as long as it is stuck (what makes ``ps`` hang), and
the event loop serves every client.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._process_names import RANK_VARIABLES, short_command

if TYPE_CHECKING:
    from ._state import Session

logger = logging.getLogger("trackd.daemon")

# Most bytes read of a process's environment: the variables of a launcher come early, and a
# process started with megabytes of environment is not read whole on each connect.
MAX_ENVIRON_BYTES = 256 * 1024
# Most bytes read of its command line: what status shows is MAX_COMMAND_CHARS of it.
MAX_CMDLINE_BYTES = 4 * 1024
PROC = "/proc"


@dataclass(frozen=True, slots=True)
class Identity:
    """What status shows of a client's process beside its pid: None for what could not be read."""

    command: str | None = None
    rank: str | None = None
    local_rank: str | None = None
    ppid: int | None = None

    def status(self) -> dict[str, object]:
        """Its part of the client's entry in a status reply."""
        return {"command": self.command, "rank": self.rank, "local_rank": self.local_rank, "ppid": self.ppid}


UNKNOWN = Identity()


def read_identity(pid: int, proc: str = PROC) -> Identity:
    """``pid``'s command, RANK, LOCAL_RANK and parent pid from ``proc``; UNKNOWN parts for what cannot be read."""
    folder = f"{proc}/{pid}"
    cmdline = _read(f"{folder}/cmdline", MAX_CMDLINE_BYTES)
    environ = _read(f"{folder}/environ", MAX_ENVIRON_BYTES)
    stat = _read(f"{folder}/stat", 4096)
    command = None if cmdline is None else short_command([arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg])
    variables: dict[str, str] = {}
    if environ is not None:
        wanted = {name.encode() + b"=" for name, _ in RANK_VARIABLES}
        for entry in environ.split(b"\0"):
            name, _, value = entry.partition(b"=")
            if name + b"=" in wanted:
                variables[name.decode()] = value.decode(errors="replace")
    ppid = None
    if stat is not None:
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses (as _peer.process_state reads it).
        try:
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            pass
    return Identity(
        command=command or None,
        rank=variables.get("RANK") or None,
        local_rank=variables.get("LOCAL_RANK") or None,
        ppid=ppid,
    )


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as file:
            return file.read(limit)
    except OSError:  # gone, another uid's (not served), no /proc (macOS)
        return None


class Identities:
    """Reads the processes of new sessions in one thread, started at the first, and sets their ``identity``."""

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        self._queue: queue.SimpleQueue[tuple[Session, int]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.supported = os.path.isdir(f"{proc}/self")

    def identify(self, session: Session, kernel_pid: int | None) -> None:
        """Read ``session``'s process, if the kernel names it as its Hello does (``kernel_pid``)."""
        if not self.supported or not kernel_pid or kernel_pid != session.pid:
            return
        if self._thread is None:
            # A daemon thread: one stuck reading a process's memory must not hold the daemon's exit.
            self._thread = threading.Thread(target=self._run, name="trackd-identities", daemon=True)
            self._thread.start()
        self._queue.put((session, kernel_pid))

    def _run(self) -> None:
        while True:
            session, pid = self._queue.get()
            try:
                # One attribute set, read by the loop's status(): whole or not yet there.
                session.identity = read_identity(pid, self._proc)
            except Exception:  # never let one odd process stop the others being named
                logger.exception("Reading /proc of client pid %d for status failed", pid)
