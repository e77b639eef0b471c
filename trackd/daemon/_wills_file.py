"""The file of wills beside the socket (``trackd.sock.wills``): a daemon that dies or restarts loses none.

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
"""

from __future__ import annotations

import asyncio
import contextlib
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

# The shortest time between two writes of the file: the changes made meanwhile go in one write. A
# will registered less than this before the daemon is killed is lost with it.
SAVE_INTERVAL = 0.1
# A file of thousands of wills takes a while to write: the time between writes is at least this
# many times the last write's, so writing it never takes more than a small share of the daemon's time.
SAVE_COST_FACTOR = 20
# After a write that failed (a full disk under the socket's folder), the next try waits this long.
FAILED_SAVE_RETRY = 5.0

Row = dict[str, object]


class WillsFile:
    """The wills file of one daemon: read at start, rewritten soon after each change, last at shutdown."""

    def __init__(self, path: Path, rows: Callable[[], list[Row]]) -> None:
        self.path = path
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

    def changed(self) -> None:
        """The wills changed: the file is rewritten soon, once for all the changes made meanwhile."""
        if self._closed:
            return
        self._changes += 1
        if self._task is None:
            # Held here (a strong reference) until it ends; close() waits for it.
            self._task = asyncio.get_running_loop().create_task(self._save_soon(), name="trackd-wills-file")

    async def _save_soon(self) -> None:
        try:
            while self._written < self._changes and not self._closed:
                await asyncio.sleep(self._gap)
                changes, rows, started = self._changes, self._rows(), time.monotonic()
                saved = await asyncio.to_thread(self._write, rows, changes)
                self._gap = max(SAVE_INTERVAL, SAVE_COST_FACTOR * (time.monotonic() - started)) if saved else FAILED_SAVE_RETRY
        finally:
            self._task = None

    async def close(self, rows: list[Row]) -> None:
        """Shutdown: write ``rows``, the wills left to the next daemon, and nothing after them."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # not the task itself: its cancellation is not ours
        if self._write(rows, self._changes + 1):
            if rows:
                logger.info("Shutdown: left %s to the next daemon in %s", counted(len(rows), "will"), self.path)
        else:
            logger.error("Shutdown: could not leave %s to the next daemon in %s", counted(len(rows), "will"), self.path)

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


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole, readable by this user alone."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SOCKET_MODE)
    with open(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(descriptor, SOCKET_MODE)  # one a killed daemon left may have had other modes
        file.write(text)
    os.replace(temporary, path)
