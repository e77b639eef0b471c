"""What the sender owes the daemon: buffered records cut into batch-sized chunks, and requests
waiting for their replies. Pure data handling, used only by the sender thread and its callers."""

from __future__ import annotations

import collections
import contextlib
import itertools
import operator
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._process_names import speaker
from .._struct import Frozen
from .._words import counted
from ..errors import TrackdError
from ..protocol import ARTIFACT, METRIC, Batch, Event, Record, RecordKind, metric_series
from ._fork_hold import import_module

if TYPE_CHECKING:
    import logging

# A flush barrier travels through the buffer as a pseudo-record, so it is sent after every
# record appended before it. Kind 0 is not a RecordKind and never reaches the wire.
BARRIER = 0


class FlushReport(Frozen):
    """What a flush found: events written so far, dropped by the on-full policy, and still held."""

    __slots__ = ("acked_batches", "dropped", "pending")
    acked_batches: int
    dropped: int
    pending: int

    def __init__(self, acked_batches: int, dropped: int, pending: int) -> None:
        object.__setattr__(self, "acked_batches", acked_batches)
        object.__setattr__(self, "dropped", dropped)
        object.__setattr__(self, "pending", pending)


class Request:
    """A request to the daemon that a caller waits on."""

    __slots__ = ("barrier", "build", "done", "error", "request_id", "result")

    def __init__(self, request_id: int, build: Callable[[int], Event]) -> None:
        self.request_id = request_id
        self.build = build
        # A flush barrier, which must follow the batches sent before it (see Ledger.expect_reply).
        self.barrier = False
        self.done = False
        self.result: Event | None = None
        self.error: TrackdError | None = None


# The byte estimate of a metric record in a chunk: what a short key's record packs to. Only a
# target for the batch's size; a record of a long key and run id packs to up to ~2 KB, and a batch
# over MAX_FRAME_SIZE is split when it is encoded (SenderState._encode), not lost.
_METRIC_RECORD_SIZE = 64
_KIND = operator.itemgetter(0)


def next_chunk(
    buffer: collections.deque[Record], max_records: int, max_bytes: int
) -> tuple[list[Record], Request | None]:
    """Pop the records of one batch frame (within the count and byte limits), stopping at a flush barrier.

    The sender thread shares the GIL with the training loop, so the common case, a buffer of
    metric points, is popped and checked in C (~25 ns a record; the loop below costs ~90):
    starmap calls popleft n times. Only this thread pops, and callers append on the right, so
    records popped past the first other kind are put back in front, in order, for the loop.
    """
    n = min(len(buffer), max_records, max_bytes // _METRIC_RECORD_SIZE)
    records = list(itertools.starmap(buffer.popleft, itertools.repeat((), n)))
    kinds = list(map(_KIND, records))
    if kinds.count(METRIC) == n:
        return records, None
    first_other = next(i for i, kind in enumerate(kinds) if kind != METRIC)
    buffer.extendleft(reversed(records[first_other:]))
    del records[first_other:]
    popleft = buffer.popleft
    size = first_other * _METRIC_RECORD_SIZE
    while buffer and len(records) < max_records and size < max_bytes:
        record = popleft()
        kind = record[0]
        if kind == METRIC:
            size += _METRIC_RECORD_SIZE
        elif kind == BARRIER:
            return records, record[1]
        else:
            size += _METRIC_RECORD_SIZE + record_size(record)
            if kind == ARTIFACT and record[3] is not None:
                # An artifact's content (up to 8 MiB inline) ends its batch, so the frame stays
                # under MAX_FRAME_SIZE; it still travels in this batch. One sent by path or an
                # empty folder is a few names: a tree of 1,000 empty folders went as 1,000 batches.
                records.append(record)
                break
        records.append(record)
    return records, None


def batch_of(seq: int, records: list[Record]) -> Batch:
    """The Batch for one chunk: as metric series when the chunk is a training loop's cycle of points.

    Columns pack in less time than the records they replace and cost the daemon ~3x less to
    decode, check and group; anything else travels record by record.
    """
    series = metric_series(records)
    return Batch.of_checked_records(seq, records if series is None else series, len(records))


def record_size(record: Record) -> int:
    """Rough bytes of a non-metric record (strings, bytes and a create-run record's tags)."""
    size = 0
    for value in record:
        if type(value) is str or type(value) is bytes:
            size += len(value) * (4 if type(value) is str else 1)  # UTF-8 is at most 4 bytes a character
        elif type(value) is dict:
            size += sum(4 * (len(k) + len(v)) + 8 for k, v in value.items())
    return size


def describe_record(record: Record) -> str:
    """A record for a message: "A tag record 'note' of run 3bd6...", with the key or path it writes, if any."""
    try:
        kind = RecordKind(record[0])
    except ValueError:
        return f"A record of kind {record[0]!r}"
    named = kind in (RecordKind.METRIC, RecordKind.PARAM, RecordKind.TAG, RecordKind.DELETE_TAG, RecordKind.ARTIFACT)
    return f"A {kind.name.lower().replace('_', ' ')} record{f' {record[2]!r}' if named else ''} of run {record[1]}"


def inline_size(record: Record) -> int:
    """Bytes of artifact content a buffered record carries (an inline artifact's; 0 for any other)."""
    return len(record[3] or b"") if record[0] == ARTIFACT else 0


def events(count: int, verb: str = "", *, more: bool = False) -> str:
    """``count`` events for a warning, with ``verb`` ("are ...", "were ...") agreeing: "1 event
    was not delivered", "3 more events were not delivered"."""
    said = counted(count, "more event" if more else "event")
    if count == 1 and verb:
        verb = verb.replace("were", "was", 1) if verb.startswith("were") else verb.replace("are", "is", 1)
    return f"{said} {verb}" if verb else said


def batches(count: int) -> str:
    """"1 batch", "3 batches": for the lines that say what a spool delivered."""
    return counted(count, "batch")


def events_in(count: int, batch_count: int, noun: str = "event") -> str:
    """"15302 events (2 batches)" (``noun``: "spooled event", ...): what a spool or a resend holds,
    events first, as the exit line that spooled them counts them. Lines that said "delivered 2
    batches" of what an exit had called "15302 events were not delivered" could not be matched up."""
    return f"{counted(count, noun)} ({batches(batch_count)})"


def warn(message: str) -> None:
    """One line on stderr: trackd is quiet unless something needs the user's attention.

    Written to stderr's file descriptor in one ``os.write``, which takes no lock, rather than
    through ``sys.stderr``, whose ``BufferedWriter`` holds a lock while it writes (unless
    PYTHONUNBUFFERED is set). A process forked while the sender thread wrote a line (to a pipe
    or terminal slow to take it) kept that lock taken for ever, and the child's next write or
    flush of stderr waited for ever: a traceback, a warning, the flush every multiprocessing
    child makes as it ends; and its parent waited for ever on the child. A ``sys.stderr`` the
    program replaced (pytest's capture, a notebook's stream, a logging tee) gets the line
    through ``print`` as before: it may not write to descriptor 2 at all.

    A process that is one of many (a rank, a multiprocessing child) names itself ("trackd (rank
    3, pid 1234): ..."): the lines of a job's 12 processes, exiting at once, interleaved with
    nothing to tell whose was whose.
    """
    line = f"{speaker()}: {message}\n"
    if (fd := warn_descriptor()) is not None:
        # One write, so the line is never cut by another process's (the pipe takes up to
        # PIPE_BUF bytes whole); the rest, if it is longer, follows in as many as it takes.
        data = line.encode(getattr(sys.__stderr__, "encoding", None) or "utf-8", "backslashreplace")
        with contextlib.suppress(OSError):  # stderr closed, or a broken pipe: nowhere to say it
            while data:
                data = data[os.write(fd, data) :]
        return
    print(line, end="", file=sys.stderr, flush=True)


def warn_descriptor() -> int | None:
    """The file descriptor ``warn`` writes its lines to (stderr's), or None when it prints them
    to a ``sys.stderr`` the program replaced, or stderr is closed or not a file."""
    original = sys.__stderr__
    if original is None or sys.stderr is not original:
        return None
    try:
        return original.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or not a file
        return None


def warn_late(count: int, began: str) -> None:
    """The one line for ``count`` events that other threads logged after ``began`` ("exit",
    "close()") had sent its last batch; nothing when there are none. No daemon is blamed: a thread
    that keeps logging through exit (a system-metrics monitor) always leaves some."""
    if count:
        warn(
            f"{events(count, 'were not delivered')}: logged by other threads after {began} had sent its last "
            f"batch ({began} delivers what was logged before it began and while it delivered, then stops)."
        )


def log_exception(message: str) -> None:
    """Log the exception being handled, with ``message``, to the "trackd.client" logger; on stderr
    if logging cannot be loaded (at interpreter shutdown), so that the caller's handler never raises."""
    try:
        client_logger().exception(message)
    except Exception:
        warn(f"{message} (logging unavailable)")


def client_logger() -> logging.Logger:
    """The "trackd.client" logger, for what is worth a line in the application's log (a bug in the
    sender, spooled batches delivered). Imported here, when first needed: a client process that
    never logs does not carry the logging module (~0.9 MB of RSS, ~3 ms of import). The first
    import comes with forks waiting (``import_module``): it may be a trackd thread's (the sender's,
    the spool deliverer's), and a child forked while it ran waited for ever at its own first
    ``import logging``."""
    import_module("logging")
    import logging  # loaded now: a look-up

    return logging.getLogger("trackd.client")
