"""Events: every message a client and the daemon exchange, as validated values.

Each event validates its fields in its constructor, so an invalid event never exists (as h11's
events do). Constructors raise LocalProtocolError; ``Connection.next_event`` turns that into
RemoteProtocolError when the bad values came from the peer.

Client to daemon: Hello, Batch, Flush, CreateExperiment, GetExperiment, GetStatus, Dropped, OwnedRuns, SpooledWill.
Daemon to client: Welcome, Ack, FlushDone, ExperimentReply, Rejected, StatusReply, ErrorReply, BadBatch.
"""

from __future__ import annotations

import re
from typing import ClassVar

from .._struct import Frozen
from ..errors import LocalProtocolError
from ._limits import (
    MAX_INT64,
    MAX_NAME_LENGTH,
    MAX_OWNED_RUNS,
    MAX_RECORDS_PER_BATCH,
    MAX_RUN_ID_BYTES,
    MAX_TAGS_PER_RECORD,
    MAX_TEXT_LENGTH,
)
from ._records import Record, _show, check_records

__all__ = [
    "Ack",
    "BadBatch",
    "Batch",
    "ConnectionClosed",
    "CreateExperiment",
    "Dropped",
    "ErrorCode",
    "ErrorReply",
    "Event",
    "ExperimentReply",
    "Flush",
    "FlushDone",
    "GetExperiment",
    "GetStatus",
    "Hello",
    "OwnedRuns",
    "Rejected",
    "SpooledWill",
    "StatusReply",
    "Welcome",
    "is_run_id",
    "store_unavailable_message",
    "store_unavailable_reason",
]


def _require_int(event: object, field: str, value: object, minimum: int = 0) -> None:
    if type(value) is not int or not minimum <= value <= MAX_INT64:
        raise LocalProtocolError(
            f"{type(event).__name__}.{field} must be an integer from {minimum} to {MAX_INT64}, got {_show(value)}."
        )


def _require_str(event: object, field: str, value: object, limit: int = MAX_NAME_LENGTH, *, empty: bool = False) -> None:
    if type(value) is not str or len(value) > limit or (not empty and not value):
        raise LocalProtocolError(
            f"{type(event).__name__}.{field} must be a {'' if empty else 'non-empty '}string of at most "
            f"{limit} characters, got {_show(value)}."
        )


class Event(Frozen):
    """Base class of every protocol event: frozen, its fields in ``__slots__`` in wire order."""

    __slots__ = ()
    # How many of the last fields a frame may leave off (added in a later protocol version).
    _optional: ClassVar[int] = 0


_set = object.__setattr__


class Hello(Event):
    """The client's first frame: who it is, which store it writes to, and the URI under which the
    store's new experiments go (``artifact_root``; nil: the store's ``file://`` URI)."""

    __slots__ = ("protocol_version", "client_id", "pid", "host", "store_root", "artifact_root")
    # Fields a peer may leave off the end of the frame (nil then): protocol 6 sent a Hello without
    # artifact_root, and a spool file an older trackd wrote starts with one.
    _optional: ClassVar[int] = 1
    protocol_version: int
    client_id: str
    pid: int
    host: str
    store_root: str
    artifact_root: str | None

    def __init__(
        self, *, protocol_version: int, client_id: str, pid: int, host: str, store_root: str,
        artifact_root: str | None = None,
    ) -> None:
        _require_int(self, "protocol_version", protocol_version)
        _require_str(self, "client_id", client_id)
        _require_int(self, "pid", pid)
        _require_str(self, "host", host, empty=True)
        # An empty store root marks a control connection (``trackd daemon status``) that writes nothing.
        _require_str(self, "store_root", store_root, MAX_TEXT_LENGTH, empty=True)
        if store_root and not store_root.startswith("/"):
            # A relative root was resolved against the daemon's working folder, not the client's:
            # its points went to another store. Every trackd client has sent an absolute one.
            raise LocalProtocolError(
                f"Hello.store_root must be an absolute path (or empty, for a control connection), got {_show(store_root)}."
            )
        _set(self, "protocol_version", protocol_version)
        _set(self, "client_id", client_id)
        _set(self, "pid", pid)
        _set(self, "host", host)
        _set(self, "store_root", store_root)
        # MLflow's FileStore makes new experiments under its tracking URI, in its form: a plain
        # path gives plain paths, a file: URI file: URIs. The daemon checks that it names store_root.
        if artifact_root is not None:
            _require_str(self, "artifact_root", artifact_root, MAX_TEXT_LENGTH)
        _set(self, "artifact_root", artifact_root)


class Welcome(Event):
    """The daemon accepts the client; ``resume_seq`` is the highest batch it already holds as written."""

    __slots__ = ("protocol_version", "daemon_pid", "resume_seq")
    protocol_version: int
    daemon_pid: int
    resume_seq: int

    def __init__(self, *, protocol_version: int, daemon_pid: int, resume_seq: int) -> None:
        _require_int(self, "protocol_version", protocol_version)
        _require_int(self, "daemon_pid", daemon_pid)
        _require_int(self, "resume_seq", resume_seq)
        _set(self, "protocol_version", protocol_version)
        _set(self, "daemon_pid", daemon_pid)
        _set(self, "resume_seq", resume_seq)


class Batch(Event):
    """Records to write, numbered by the client's sequence number (1, 2, 3, ...).

    ``events`` is not on the wire: it is how many events the records hold (a metric series
    counts its points), which is what the daemon batches by, counts and bounds.
    """

    __slots__ = ("seq", "records", "events")
    _derived = frozenset({"events"})
    seq: int
    records: list[Record]
    events: int

    def __init__(self, *, seq: int, records: list[Record]) -> None:
        _require_int(self, "seq", seq, 1)
        if type(records) is not list or len(records) > MAX_RECORDS_PER_BATCH:
            raise LocalProtocolError(
                f"Batch.records must be a list of at most {MAX_RECORDS_PER_BATCH} records, got {_show(records)}."
            )
        events = check_records(records)
        if events > MAX_RECORDS_PER_BATCH:
            raise LocalProtocolError(
                f"A Batch holds {events} events; at most {MAX_RECORDS_PER_BATCH} travel in one batch."
            )
        _set(self, "seq", seq)
        _set(self, "records", records)
        _set(self, "events", events)

    @classmethod
    def of_checked_records(cls, seq: int, records: list[Record], events: int) -> Batch:
        """Build a Batch from records the client's call sites already validated, skipping the per-record checks.

        The sender thread shares the GIL with training code, so it must not check a million
        records twice. The daemon always checks what it receives.
        """
        batch = object.__new__(cls)
        _set(batch, "seq", seq)
        _set(batch, "records", records)
        _set(batch, "events", events)
        return batch


class Ack(Event):
    """Every batch up to and including ``seq`` is written to the store."""

    __slots__ = ("seq",)
    seq: int

    def __init__(self, *, seq: int) -> None:
        _require_int(self, "seq", seq)
        _set(self, "seq", seq)


class Flush(Event):
    """A barrier: reply once everything sent before it is written to the store."""

    __slots__ = ("request_id",)
    request_id: int

    def __init__(self, *, request_id: int) -> None:
        _require_int(self, "request_id", request_id, 1)
        _set(self, "request_id", request_id)


class FlushDone(Event):
    """Everything the client sent before Flush ``request_id`` is written, up to batch ``acked_seq``."""

    __slots__ = ("request_id", "acked_seq")
    request_id: int
    acked_seq: int

    def __init__(self, *, request_id: int, acked_seq: int) -> None:
        _require_int(self, "request_id", request_id, 1)
        _require_int(self, "acked_seq", acked_seq)
        _set(self, "request_id", request_id)
        _set(self, "acked_seq", acked_seq)


class CreateExperiment(Event):
    """Create an experiment by name; the reply carries its new id."""

    __slots__ = ("request_id", "name", "artifact_location", "tags")
    request_id: int
    name: str
    artifact_location: str | None
    tags: dict[str, str]

    def __init__(self, *, request_id: int, name: str, artifact_location: str | None, tags: dict[str, str]) -> None:
        _require_int(self, "request_id", request_id, 1)
        _require_str(self, "name", name)
        if artifact_location is not None:
            _require_str(self, "artifact_location", artifact_location, MAX_TEXT_LENGTH)
        if type(tags) is not dict or len(tags) > MAX_TAGS_PER_RECORD:
            raise LocalProtocolError(
                f"CreateExperiment.tags must be a map of at most {MAX_TAGS_PER_RECORD} entries, got {_show(tags)}."
            )
        for key, value in tags.items():
            _require_str(self, "tags key", key)
            _require_str(self, f"tags[{key!r}]", value, MAX_TEXT_LENGTH, empty=True)
        _set(self, "request_id", request_id)
        _set(self, "name", name)
        _set(self, "artifact_location", artifact_location)
        _set(self, "tags", tags)


class GetExperiment(Event):
    """Look an experiment up by name; ``create`` makes it when missing (what set_experiment does)."""

    __slots__ = ("request_id", "name", "create")
    request_id: int
    name: str
    create: bool

    def __init__(self, *, request_id: int, name: str, create: bool) -> None:
        _require_int(self, "request_id", request_id, 1)
        _require_str(self, "name", name)
        if type(create) is not bool:
            raise LocalProtocolError(f"GetExperiment.create must be a boolean, got {_show(create)}.")
        _set(self, "request_id", request_id)
        _set(self, "name", name)
        _set(self, "create", create)


class ExperimentReply(Event):
    """The answer to CreateExperiment or GetExperiment; ``experiment_id`` is None when there is none."""

    __slots__ = ("request_id", "experiment_id")
    request_id: int
    experiment_id: str | None

    def __init__(self, *, request_id: int, experiment_id: str | None) -> None:
        _require_int(self, "request_id", request_id, 1)
        if experiment_id is not None:
            _require_str(self, "experiment_id", experiment_id)
        _set(self, "request_id", request_id)
        _set(self, "experiment_id", experiment_id)


class Rejected(Event):
    """An item of batch ``seq`` was refused by the store; ``item`` names it, ``message`` says why,
    and ``events`` is how many events it held (a metric series holds many points)."""

    __slots__ = ("seq", "item", "message", "events")
    seq: int
    item: str
    message: str
    events: int

    def __init__(self, *, seq: int, item: str, message: str, events: int = 1) -> None:
        _require_int(self, "seq", seq)
        _require_str(self, "item", item, MAX_TEXT_LENGTH)
        _require_str(self, "message", message, MAX_TEXT_LENGTH)
        _require_int(self, "events", events, 1)
        _set(self, "seq", seq)
        _set(self, "item", item)
        _set(self, "message", message)
        _set(self, "events", events)

    @classmethod
    def rest(cls, *, first_seq: int, seq: int, items: int, events: int, message: str) -> Rejected:
        """The one Rejected that counts ``items`` refused items (``events`` events) of batches
        ``first_seq`` to ``seq`` the daemon did not name one by one (``message`` says why)."""
        batches = f"batch {seq}" if first_seq == seq else f"batches {first_seq} to {seq}"
        return cls(seq=seq, item=f"{items} more {'item' if items == 1 else 'items'} of {batches}", message=message, events=events)

    @property
    def items(self) -> int:
        """The refused items it stands for: more than one for a ``rest``."""
        found = _REST_ITEM.match(self.item)
        return int(found.group(1)) if found else 1


# A daemon names at most so many refused items of a batch, each in a Rejected (a client that never
# read them grew the daemon by hundreds of MB); one more Rejected counts the rest, in its item,
# which both sides build and read here. A field of its own would take a new protocol version,
# which every daemon running before it would refuse; an older client counts it as one item, and
# still says the sentence. Items the store names begin with their kind ("param 'lr' of run ..."),
# never with a number.
_REST_ITEM = re.compile(r"([1-9][0-9]*) more items? of batch(?:es)? [0-9]")


class GetStatus(Event):
    """Ask the daemon for its counters (what ``trackd daemon status`` shows)."""

    __slots__ = ("request_id",)
    request_id: int

    def __init__(self, *, request_id: int) -> None:
        _require_int(self, "request_id", request_id, 1)
        _set(self, "request_id", request_id)


class StatusReply(Event):
    """The daemon's counters: a map of names to numbers, strings or nested maps."""

    __slots__ = ("request_id", "status")
    request_id: int
    status: dict[str, object]

    def __init__(self, *, request_id: int, status: dict[str, object]) -> None:
        _require_int(self, "request_id", request_id, 1)
        if type(status) is not dict:
            raise LocalProtocolError(f"StatusReply.status must be a map, got {_show(status)}.")
        _set(self, "request_id", request_id)
        _set(self, "status", status)


class Dropped(Event):
    """The client's on-full policy dropped ``total`` events so far (TRACKD_ON_FULL=drop), for status."""

    __slots__ = ("total",)
    total: int

    def __init__(self, *, total: int) -> None:
        _require_int(self, "total", total)
        _set(self, "total", total)


class OwnedRuns(Event):
    """The runs this client owns and has not ended: the daemon fails them if its process exits first.

    The whole set each time (it replaces the last one), so sending it again is harmless: the
    client does after every reconnect. ``spool_path`` is the client's spool file, which may hold
    the end of a run not delivered yet: the daemon waits while it exists.
    """

    __slots__ = ("run_ids", "spool_path")
    run_ids: tuple[str, ...]
    spool_path: str

    def __init__(self, *, run_ids: tuple[str, ...], spool_path: str) -> None:
        run_ids = _require_run_ids(self, run_ids)
        _require_str(self, "spool_path", spool_path, MAX_TEXT_LENGTH, empty=True)
        _set(self, "run_ids", run_ids)
        _set(self, "spool_path", spool_path)


class SpooledWill(Event):
    """The runs the process that wrote a spool file owned and had not ended, and that process.

    Written into the spool file, before the batches that create those runs, by a process that
    spools because no daemon answers (it tells no daemon its ``OwnedRuns`` then); sent by the
    process that delivers the file once it exited (``trackd sync``, another client), after its
    batches. The daemon fails those runs still RUNNING once the process that wrote the file is
    gone: ``pid`` no longer runs, or runs with another ``started`` (its start time in clock ticks
    since boot, ``/proc/<pid>/stat`` field 22; nil where it cannot be read). ``seen_ms``: when the
    process was last known to run (in the file, when the frame was written; sent, when the file
    was last written), the failed runs' end time.
    """

    __slots__ = ("run_ids", "pid", "started", "host", "spool_path", "seen_ms")
    run_ids: tuple[str, ...]
    pid: int
    started: int | None
    host: str
    spool_path: str
    seen_ms: int

    def __init__(
        self, *, run_ids: tuple[str, ...], pid: int, started: int | None, host: str, spool_path: str, seen_ms: int,
    ) -> None:
        run_ids = _require_run_ids(self, run_ids)
        _require_int(self, "pid", pid)
        if started is not None:
            _require_int(self, "started", started)
        _require_str(self, "host", host, empty=True)
        _require_str(self, "spool_path", spool_path, MAX_TEXT_LENGTH, empty=True)
        _require_int(self, "seen_ms", seen_ms)
        _set(self, "run_ids", run_ids)
        _set(self, "pid", pid)
        _set(self, "started", started)
        _set(self, "host", host)
        _set(self, "spool_path", spool_path)
        _set(self, "seen_ms", seen_ms)


# MLflow's _RUN_ID_REGEX (trackd/store/_validation.py's, which the protocol does not import); the
# length is MAX_RUN_ID_BYTES' to check, as the store checks it.
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]*")


def is_run_id(run_id: object) -> bool:
    """Whether ``run_id`` is a run id the store takes (``store.validate_run_id``'s rule): letters,
    digits, '_' or '-', starting with a letter or digit, at most MAX_RUN_ID_BYTES in UTF-8."""
    return (
        type(run_id) is str and len(run_id) <= MAX_RUN_ID_BYTES and _RUN_ID.fullmatch(run_id) is not None
        and (run_id.isascii() or len(run_id.encode("utf-8")) <= MAX_RUN_ID_BYTES)
    )


def _require_run_ids(event: object, run_ids: object) -> tuple[str, ...]:
    """``run_ids`` as a tuple, as msgpack arrays decode (a list is accepted from a caller): run ids
    the store takes, since the daemon keeps them for as long as their process may run."""
    if not isinstance(run_ids, (tuple, list)) or type(run_ids) not in (tuple, list) or len(run_ids) > MAX_OWNED_RUNS:
        raise LocalProtocolError(
            f"{type(event).__name__}.run_ids must be an array of at most {MAX_OWNED_RUNS} run ids, got {_show(run_ids)}."
        )
    for index, run_id in enumerate(run_ids):
        if not is_run_id(run_id):
            raise LocalProtocolError(
                f"{type(event).__name__}.run_ids[{index}] must be a run id the store takes: letters, digits, '_' "
                f"or '-', starting with a letter or digit, at most {MAX_RUN_ID_BYTES} bytes in UTF-8, got {_show(run_id)}."
            )
    return tuple(run_ids)


class ErrorCode:
    """Values of ErrorReply.code."""

    VERSION_MISMATCH = "version_mismatch"
    BAD_FRAME = "bad_frame"
    REQUEST_FAILED = "request_failed"
    SHUTTING_DOWN = "shutting_down"
    FORBIDDEN = "forbidden"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    STORE_UNAVAILABLE = "store_unavailable"


# ErrorReply(code=STORE_UNAVAILABLE)'s message: the store's own sentence (what failed, why, where),
# then how many of the client's events wait. The client quotes the first part again when exit or
# end_run gives up waiting ("the daemon ... cannot write to the store: ..."), when the count the
# daemon gave is long out of date; so both sides build and read it here.
_EVENTS_WAIT = " events of this client wait, and are written when the store accepts writes again"
_STORE_REASON = re.compile(rf"(.+) \d+{re.escape(_EVENTS_WAIT)}", re.DOTALL)


def store_unavailable_message(reason: str, events: int) -> str:
    """The message of the ErrorReply that tells a client ``events`` of its events wait for a store
    that refused a write (``reason``: the store's sentence)."""
    return f"{reason} {events}{_EVENTS_WAIT}; new events wait while the daemon's backlog for such stores is full."


def store_unavailable_reason(message: str) -> str:
    """The store's sentence in a ``store_unavailable`` message, without its count; the whole
    message if a daemon of another trackd worded it otherwise."""
    found = _STORE_REASON.match(message)
    return found.group(1) if found else message


class ErrorReply(Event):
    """A request failed (``request_id`` > 0) or the connection is being closed (``request_id`` 0)."""

    __slots__ = ("request_id", "code", "message")
    request_id: int
    code: str
    message: str

    def __init__(self, *, request_id: int, code: str, message: str) -> None:
        _require_int(self, "request_id", request_id)
        _require_str(self, "code", code)
        _require_str(self, "message", message, MAX_TEXT_LENGTH)
        _set(self, "request_id", request_id)
        _set(self, "code", code)
        _set(self, "message", message)


class BadBatch(Event):
    """Batch ``seq`` broke the protocol (``message`` says how): the daemon will never write it, and
    closes the connection after ``ErrorReply(bad_frame)``; the client must not send it again.

    The client checks its records as the daemon does, but a daemon of a later trackd speaking the
    same protocol version may check a field more strictly: unnamed, the batch went again on every
    connection, for ever.
    """

    __slots__ = ("seq", "message")
    seq: int
    message: str

    def __init__(self, *, seq: int, message: str) -> None:
        _require_int(self, "seq", seq, 1)
        _require_str(self, "message", message, MAX_TEXT_LENGTH)
        _set(self, "seq", seq)
        _set(self, "message", message)


class ConnectionClosed(Event):
    """The peer closed the connection (never sent on the wire)."""

    __slots__ = ()
