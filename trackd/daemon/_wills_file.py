"""The file of wills beside the socket (``trackd.sock.wills``) and its journal: a daemon that dies or restarts loses none.

Kept in memory only, the wills died with a daemon that was SIGKILLed (the OOM killer) or crashed,
so a process that owned runs and died before it reached the next daemon left them RUNNING for
ever; and a daemon that stopped kept only those of exited processes, so a process killed in the
second or two before it reconnected to the next daemon left its runs RUNNING too. The daemon
keeps every will it knows in this file, those of live connections included, with the process
identity it tells a dead process by (pid and start time); the next daemon takes them all on.

``WillsFile`` rewrites the file whole (a temp file, then a rename: a daemon killed mid-write
leaves the last whole file) in a thread, off the event loop, once for any number of changes
made meanwhile: a benchmark suite starting hundreds of short processes costs a write per
``SAVE_INTERVAL`` at most. The file is 0600, as the socket: run ids and spool paths are the
user's. A damaged file never keeps a daemon from starting: what cannot be read is said in one
line and left out.

Rewritten every 0.1 s only, the file lost a will a daemon learned less than 0.1 s before it was
SIGKILLed: a process that started its run then, and was killed after the daemon, left it RUNNING
for ever (a chaos run under load). So each change is also appended, on the event loop before the
daemon reads the connection's next message, to the journal beside it (``trackd.sock.wills.log``,
0600): one line, one ``write()`` of a few hundred bytes, with the client's will as it is now (or
none), which the next daemon replays on top of the file. The page cache outlives a killed
process: no fsync (a power loss may lose the last changes). A line holds the client's whole
will, so replaying one the file holds already changes nothing, and the journal is emptied of the
lines a rewrite holds only after its rename: a daemon killed between the two leaves both, which
read the same. A line that could not be appended empties the journal (a client's older line
must never stand for its newer state): the file alone then, as before the journal, said once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._paths import SOCKET_MODE
from .._words import counted

logger = logging.getLogger("trackd.daemon")

# The shortest time between two writes of the file: the changes made meanwhile go in one write (and
# in the journal, each as it is made, until that write).
SAVE_INTERVAL = 0.1
# A file of thousands of wills takes a while to write: the time between writes is at least this
# many times the last write's, so writing it never takes more than a small share of the daemon's time.
SAVE_COST_FACTOR = 20
# After a write that failed (a full disk under the socket's folder), the next try waits this long.
FAILED_SAVE_RETRY = 5.0

Row = dict[str, object]
# A journal line: the client id, and its will as the file would hold it now (None: it has none).
Change = tuple[str, Row | None]


class WillsFile:
    """The wills file of one daemon: read at start, rewritten soon after each change, last at shutdown;
    and its journal, each change appended at once, emptied by each rewrite."""

    def __init__(self, path: Path, journal: Path, rows: Callable[[], list[Row]]) -> None:
        self.path = path
        self.journal = journal
        # What the file must hold now, one JSON object per will (called on the event loop).
        self._rows = rows
        # Changes counted on the loop; the last one the file holds, set by the thread that wrote it.
        self._changes = 0
        self._written = 0
        self._gap = SAVE_INTERVAL
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # A write in a thread and the last one at shutdown: the older never replaces the newer.
        self._lock = threading.Lock()
        self._failing = False
        # The journal, opened at the first change (or at start, one the last daemon left), and
        # its size: whole lines only. Used on the event loop alone, so appends never interleave.
        self._journal_fd: int | None = None
        self._journal_size = 0
        # Where the last daemon's journal ends with a whole line, if a kill mid-append left a part after it.
        self._journal_whole: int | None = None
        # Counts the times the journal was emptied or replaced: an offset taken before is void.
        self._journal_epoch = 0
        self._journal_failing = False

    def read(self) -> tuple[list[str], int]:
        """The lines the last daemon left, and how many of them were not text (damaged)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            logger.error("Could not read the wills the last daemon left in %s: %s; its runs stay as they are", self.path, exc)
            return [], 0
        lines, damaged = [], 0
        for raw in data.splitlines():
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                damaged += 1
        return lines, damaged

    def read_journal(self) -> tuple[list[tuple[str, object]], int, str]:
        """The changes the last daemon appended after its last rewrite of the file, oldest first,
        each a client id and its will (a JSON object, or None); the damaged lines (a daemon killed
        as it appended one leaves a part of one last) and the first of them."""
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return [], 0, ""
        except OSError as exc:
            logger.error("Could not read the will changes the last daemon left in %s: %s; its runs stay as they are", self.journal, exc)
            return [], 0, ""
        if data and not data.endswith(b"\n"):
            self._journal_whole = data.rfind(b"\n") + 1  # cut before the next append
        changes: list[tuple[str, object]] = []
        damaged, first = 0, ""
        # JSON escapes every line break in a string: b"\n" ends a line and nothing else does.
        for raw in filter(bytes.strip, data.split(b"\n")):
            try:
                item = json.loads(raw)
                client_id, will = item["client_id"], item["will"]
                if not isinstance(client_id, str):
                    raise TypeError(f"client_id is {client_id!r}, expected str")
            except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
                damaged += 1
                first = first or f"{type(exc).__name__}: {exc}; {raw[:200]!r}"
                continue
            changes.append((client_id, will))
        return changes, damaged, first

    def rewrite(self) -> None:
        """Startup: write the file now, the wills the daemon took on, and empty the journal it replayed."""
        self._changes += 1
        if not self._write(self._rows(), self._changes):
            self.changed()  # tried again soon; the journal, the file's complement meanwhile, stays
            return
        self._remove_journal()

    def changed(self, changes: list[Change] | None = None) -> None:
        """The wills changed (``changes``: these clients' wills are these now): appended to the
        journal at once, and the file rewritten soon, once for all the changes made meanwhile."""
        if self._closed:
            return
        if changes:
            self._append(changes)
        self._changes += 1
        if self._task is None:
            # Held here (a strong reference) until it ends; close() waits for it.
            self._task = asyncio.get_running_loop().create_task(self._save_soon(), name="trackd-wills-file")

    async def _save_soon(self) -> None:
        try:
            while self._written < self._changes and not self._closed:
                await asyncio.sleep(self._gap)
                changes, rows, started = self._changes, self._rows(), time.monotonic()
                journaled, epoch = self._journal_size, self._journal_epoch
                saved = await asyncio.to_thread(self._write, rows, changes)
                self._gap = max(SAVE_INTERVAL, SAVE_COST_FACTOR * (time.monotonic() - started)) if saved else FAILED_SAVE_RETRY
                if saved and not self._closed:
                    self._drop_journaled(journaled, epoch)
        finally:
            self._task = None

    async def close(self, rows: list[Row]) -> None:
        """Shutdown: write ``rows``, the wills left to the next daemon, and nothing after them."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # not the task itself: its cancellation is not ours
        # Journaled first, where ``rows`` differ from what the journal says (wills applied or
        # dropped at shutdown): the journal left by a kill before its removal below, or by a write
        # that failed, reads as ``rows`` on top of the file.
        now = {str(row["client_id"]): row for row in self._rows()}
        last = {str(row["client_id"]): row for row in rows}
        self._append([(client_id, last.get(client_id)) for client_id in now | last if now.get(client_id) != last.get(client_id)])
        if self._write(rows, self._changes + 1):
            self._remove_journal()
            if rows:
                logger.info(
                    "Shutdown: left %s to the next daemon in %s: it marks their runs FAILED, if RUNNING in the store, "
                    "once their process has exited, unless it reconnects (%d exited already)",
                    counted(len(rows), "will"), self.path, sum(row.get("gone") is True for row in rows),
                )
        else:
            logger.error("Shutdown: could not leave %s to the next daemon in %s", counted(len(rows), "will"), self.path)

    def _append(self, changes: list[Change]) -> None:
        """Append ``changes`` to the journal, one line each, in one ``write()``; on failure empty it."""
        if not changes:
            return
        data = "".join(json.dumps({"client_id": client_id, "will": row}) + "\n" for client_id, row in changes).encode()
        try:
            if self._journal_fd is None:
                self._open_journal()
            assert self._journal_fd is not None
            written = os.write(self._journal_fd, data)
            self._journal_size += written
            if written != len(data):  # a full disk took a part: the line is damaged
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes")
        except OSError as exc:
            if not self._journal_failing:
                self._journal_failing = True
                logger.error(
                    "Could not append a change of the wills to %s (%s): a daemon killed before the next rewrite of "
                    "%s (0.1 s) loses it; emptied, tried again at the next change", self.journal, exc, self.path,
                )
            self._empty_journal()
            return
        if self._journal_failing:
            self._journal_failing = False
            logger.info("Appending the changes of the wills to %s again", self.journal)

    def _open_journal(self) -> None:
        descriptor = os.open(self.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, SOCKET_MODE)
        try:
            os.fchmod(descriptor, SOCKET_MODE)  # one a killed daemon left may have had other modes
            if self._journal_whole is not None:  # the part of a line a killed daemon left: the next line goes after it
                os.ftruncate(descriptor, self._journal_whole)
                self._journal_whole = None
            self._journal_size = os.fstat(descriptor).st_size
        except OSError:
            os.close(descriptor)
            raise
        self._journal_fd = descriptor

    def _empty_journal(self) -> None:
        """No line may stay once one could not be appended: it would stand for its client's will, an older one."""
        self._journal_epoch += 1
        self._journal_size = 0
        try:
            if self._journal_fd is not None:
                os.ftruncate(self._journal_fd, 0)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.journal.unlink()
        except OSError as exc:
            logger.error(
                "Could not empty %s either (%s): the next daemon may take on wills older than this daemon's",
                self.journal, exc,
            )

    def _drop_journaled(self, journaled: int, epoch: int) -> None:
        """The file holds the journal's first ``journaled`` bytes (if ``epoch`` is still the journal's):
        keep only the lines after them."""
        descriptor = self._journal_fd
        if descriptor is None or epoch != self._journal_epoch or journaled == 0:
            return
        try:
            if journaled == self._journal_size:
                os.ftruncate(descriptor, 0)
                self._journal_size = 0
            else:  # lines appended during the rewrite: a new journal of them replaces the old
                _write_private(self.journal, os.pread(descriptor, self._journal_size - journaled, journaled))
                self._journal_fd = None
                os.close(descriptor)
                # Sets the size from the new journal's: it was then cut by ``journaled`` a second
                # time, and the next rewrite's pread kept the wrong bytes (a review: a kill -9 at 40
                # of 400 moments left the next daemon wills lost or ended ones back).
                self._open_journal()
        except OSError:
            return  # they stay: lines the file holds read the same on top of it; dropped at the next rewrite
        finally:
            self._journal_epoch += 1

    def _remove_journal(self) -> None:
        """The file holds every change: the journal goes (at start, the last daemon's; at shutdown, this one's)."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        self._journal_whole = None
        self._journal_epoch += 1
        self._journal_size = 0
        try:
            # missing_ok: the OSError clause caught the FileNotFoundError a suppress() around it
            # was meant to, and a stop with no journal logged "Could not remove ...: No such file".
            self.journal.unlink(missing_ok=True)
        except OSError as exc:  # its lines read as the file does: no harm, said
            logger.warning("Could not remove %s: %s", self.journal, exc)

    def _write(self, rows: list[Row], changes: int) -> bool:
        """Make the file hold ``rows`` (none: no file), unless a newer write is there; False if it failed."""
        text = "".join(json.dumps(row) + "\n" for row in rows)
        with self._lock:
            if changes <= self._written:
                return True
            try:
                if rows:
                    _write_private(self.path, text)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    logger.error(
                        "Could not keep %s in %s (%s): a daemon killed meanwhile loses them; tried again",
                        counted(len(rows), "will"), self.path, exc,
                    )
                return False
            if self._failing:
                self._failing = False
                logger.info("Keeping the wills in %s again", self.path)
            self._written = changes
            return True


def _write_private(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` whole, readable by this user alone."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SOCKET_MODE)
    with open(descriptor, "wb") as file:
        os.fchmod(descriptor, SOCKET_MODE)  # one a killed daemon left may have had other modes
        file.write(text.encode() if isinstance(text, str) else text)
    os.replace(temporary, path)
