"""Events: every message a client and the daemon exchange, as validated values.

Each event validates its fields in its constructor, so an invalid event never exists (as h11's
events do). Constructors raise LocalProtocolError; ``Connection.next_event`` turns that into
RemoteProtocolError when the bad values came from the peer.

Client to daemon: Hello, Batch, Flush, CreateExperiment, GetExperiment, GetStatus, Dropped.
Daemon to client: Welcome, Ack, FlushDone, ExperimentReply, Rejected, StatusReply, ErrorReply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LocalProtocolError
from ._limits import MAX_INT64, MAX_NAME_LENGTH, MAX_RECORDS_PER_BATCH, MAX_TAGS_PER_RECORD, MAX_TEXT_LENGTH
from ._records import Record, _show, check_records

__all__ = [
    "Ack",
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
    "Rejected",
    "StatusReply",
    "Welcome",
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


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Event):
    """The client's first frame: who it is and which store it writes to."""

    protocol_version: int
    client_id: str
    pid: int
    host: str
    store_root: str

    def __post_init__(self) -> None:
        _require_int(self, "protocol_version", self.protocol_version)
        _require_str(self, "client_id", self.client_id)
        _require_int(self, "pid", self.pid)
        _require_str(self, "host", self.host, empty=True)
        # An empty store root marks a control connection (``trackd daemon status``) that writes nothing.
        _require_str(self, "store_root", self.store_root, MAX_TEXT_LENGTH, empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Event):
    """The daemon accepts the client; ``resume_seq`` is the highest batch it already holds as written."""

    protocol_version: int
    daemon_pid: int
    resume_seq: int

    def __post_init__(self) -> None:
        _require_int(self, "protocol_version", self.protocol_version)
        _require_int(self, "daemon_pid", self.daemon_pid)
        _require_int(self, "resume_seq", self.resume_seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch(Event):
    """Records to write, numbered by the client's sequence number (1, 2, 3, ...).

    ``events`` is not on the wire: it is how many events the records hold (a metric series
    counts its points), which is what the daemon batches by, counts and bounds.
    """

    seq: int
    records: list[Record]
    events: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _require_int(self, "seq", self.seq, 1)
        if type(self.records) is not list or len(self.records) > MAX_RECORDS_PER_BATCH:
            raise LocalProtocolError(
                f"Batch.records must be a list of at most {MAX_RECORDS_PER_BATCH} records, got {_show(self.records)}."
            )
        events = check_records(self.records)
        if events > MAX_RECORDS_PER_BATCH:
            raise LocalProtocolError(
                f"A Batch holds {events} events; at most {MAX_RECORDS_PER_BATCH} travel in one batch."
            )
        object.__setattr__(self, "events", events)

    @classmethod
    def of_checked_records(cls, seq: int, records: list[Record], events: int) -> Batch:
        """Build a Batch from records the client's call sites already validated, skipping the per-record checks.

        The sender thread shares the GIL with training code, so it must not check a million
        records twice. The daemon always checks what it receives.
        """
        batch = object.__new__(cls)
        object.__setattr__(batch, "seq", seq)
        object.__setattr__(batch, "records", records)
        object.__setattr__(batch, "events", events)
        return batch


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Event):
    """Every batch up to and including ``seq`` is written to the store."""

    seq: int

    def __post_init__(self) -> None:
        _require_int(self, "seq", self.seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class Flush(Event):
    """A barrier: reply once everything sent before it is written to the store."""

    request_id: int

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushDone(Event):
    """Everything the client sent before Flush ``request_id`` is written, up to batch ``acked_seq``."""

    request_id: int
    acked_seq: int

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)
        _require_int(self, "acked_seq", self.acked_seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateExperiment(Event):
    """Create an experiment by name; the reply carries its new id."""

    request_id: int
    name: str
    artifact_location: str | None
    tags: dict[str, str]

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)
        _require_str(self, "name", self.name)
        if self.artifact_location is not None:
            _require_str(self, "artifact_location", self.artifact_location, MAX_TEXT_LENGTH)
        if type(self.tags) is not dict or len(self.tags) > MAX_TAGS_PER_RECORD:
            raise LocalProtocolError(
                f"CreateExperiment.tags must be a map of at most {MAX_TAGS_PER_RECORD} entries, got {_show(self.tags)}."
            )
        for key, value in self.tags.items():
            _require_str(self, "tags key", key)
            _require_str(self, f"tags[{key!r}]", value, MAX_TEXT_LENGTH, empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetExperiment(Event):
    """Look an experiment up by name; ``create`` makes it when missing (what set_experiment does)."""

    request_id: int
    name: str
    create: bool

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)
        _require_str(self, "name", self.name)
        if type(self.create) is not bool:
            raise LocalProtocolError(f"GetExperiment.create must be a boolean, got {_show(self.create)}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentReply(Event):
    """The answer to CreateExperiment or GetExperiment; ``experiment_id`` is None when there is none."""

    request_id: int
    experiment_id: str | None

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)
        if self.experiment_id is not None:
            _require_str(self, "experiment_id", self.experiment_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(Event):
    """An item of batch ``seq`` was refused by the store; ``item`` names it, ``message`` says why,
    and ``events`` is how many events it held (a metric series holds many points)."""

    seq: int
    item: str
    message: str
    events: int = 1

    def __post_init__(self) -> None:
        _require_int(self, "seq", self.seq)
        _require_str(self, "item", self.item, MAX_TEXT_LENGTH)
        _require_str(self, "message", self.message, MAX_TEXT_LENGTH)
        _require_int(self, "events", self.events, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatus(Event):
    """Ask the daemon for its counters (what ``trackd daemon status`` shows)."""

    request_id: int

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Event):
    """The daemon's counters: a map of names to numbers, strings or nested maps."""

    request_id: int
    status: dict[str, object]

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id, 1)
        if type(self.status) is not dict:
            raise LocalProtocolError(f"StatusReply.status must be a map, got {_show(self.status)}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped(Event):
    """The client's on-full policy dropped ``total`` events so far (TRACKD_ON_FULL=drop), for status."""

    total: int

    def __post_init__(self) -> None:
        _require_int(self, "total", self.total)


class ErrorCode:
    """Values of ErrorReply.code."""

    VERSION_MISMATCH = "version_mismatch"
    BAD_FRAME = "bad_frame"
    REQUEST_FAILED = "request_failed"
    SHUTTING_DOWN = "shutting_down"
    FORBIDDEN = "forbidden"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply(Event):
    """A request failed (``request_id`` > 0) or the connection is being closed (``request_id`` 0)."""

    request_id: int
    code: str
    message: str

    def __post_init__(self) -> None:
        _require_int(self, "request_id", self.request_id)
        _require_str(self, "code", self.code)
        _require_str(self, "message", self.message, MAX_TEXT_LENGTH)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The peer closed the connection (never sent on the wire)."""

