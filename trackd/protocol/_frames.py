"""Framing: events to bytes and bytes to events, both driven by one table.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack holding an array
``[type_code, field, field, ...]`` with the event's fields in declaration order. ``EVENT_TYPES`` is
the only place that assigns codes, so the writer and the reader cannot disagree.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .._words import counted
from ..errors import LocalProtocolError
from ._events import (
    Ack,
    BadBatch,
    Batch,
    CreateExperiment,
    Dropped,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    FlushDone,
    GetExperiment,
    GetStatus,
    Hello,
    OwnedRuns,
    Rejected,
    SpooledWill,
    StatusReply,
    Welcome,
)
from ._limits import FRAME_HEADER_SIZE, MAX_FRAME_SIZE, MAX_INT64, MAX_RECORDS_PER_BATCH, MAX_TAGS_PER_RECORD, PROTOCOL_VERSION
from ._records import RECORD_FIELDS, RecordKind, _show

# Codes are part of the wire format: never reuse or renumber one.
EVENT_TYPES: dict[int, type[Event]] = {
    1: Hello,
    2: Welcome,
    3: Batch,
    4: Ack,
    5: Flush,
    6: FlushDone,
    7: CreateExperiment,
    8: GetExperiment,
    9: ExperimentReply,
    10: Rejected,
    11: ErrorReply,
    12: GetStatus,
    13: StatusReply,
    14: Dropped,
    15: OwnedRuns,
    16: BadBatch,
    17: SpooledWill,
}
_CODES: dict[type[Event], int] = {cls: code for code, cls in EVENT_TYPES.items()}
# The fields a frame carries, in order: those the constructor takes (Batch.events is derived).
_FIELDS: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(name for name in cls._fields if name not in cls._derived) for cls in EVENT_TYPES.values()
}
_HEADER = struct.Struct(">I")


def encode_frame(event: Event) -> bytes:
    """Return the frame for ``event``; raise LocalProtocolError if it would exceed MAX_FRAME_SIZE."""
    cls = type(event)
    try:
        body: bytes = msgpack.packb([_CODES[cls], *(getattr(event, name) for name in _FIELDS[cls])], use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as exc:
        # A StatusReply summing peers' counters past uint64 raised OverflowError out of the daemon's
        # send() (found by the long fuzz run); every packing failure is ours to report as one error.
        raise LocalProtocolError(f"A {cls.__name__} cannot be encoded as msgpack ({type(exc).__name__}: {exc}).") from exc
    if len(body) > MAX_FRAME_SIZE:
        raise LocalProtocolError(
            f"A {cls.__name__} frame of {len(body)} bytes exceeds MAX_FRAME_SIZE ({MAX_FRAME_SIZE} bytes); "
            "send fewer records per batch."
        )
    return _HEADER.pack(len(body)) + body


def decode_header(header: bytes | bytearray | memoryview) -> int:
    """Return the body length announced by a frame header, refusing oversized frames up front."""
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_SIZE:
        raise LocalProtocolError(
            f"A frame announces {size} bytes; at most MAX_FRAME_SIZE ({MAX_FRAME_SIZE} bytes) are accepted."
        )
    return int(size)


# Decoded, msgpack's smallest items become much larger objects: an empty map is 1 byte and a
# 64-byte dict, so one 16 MiB frame of them took 1.85 s and 1.3 GB to unpack. Frames up to
# _COUNTED_ABOVE are unpacked at once (at most ~80 MB of such objects); a larger one is unpacked
# with each array at most MAX_RECORDS_PER_BATCH items, each map MAX_TAGS_PER_RECORD, and at most
# MAX_CONTAINERS_PER_FRAME arrays and maps in all (a record and a series' three columns for
# every event a batch may hold), so garbage costs ~140 MB at most before it is refused.
_COUNTED_ABOVE = 1024 * 1024
MAX_CONTAINERS_PER_FRAME = 4 * MAX_RECORDS_PER_BATCH


def _unpack(body: bytes | bytearray | memoryview, **options: Any) -> Any:
    # Tuples for arrays (records are tuples), str keys only, and no ext types: a peer gets plain
    # values or an error, never an object of its choosing.
    if len(body) <= _COUNTED_ABOVE:
        return msgpack.unpackb(body, raw=False, use_list=False, ext_hook=_refuse_ext, **options)
    containers = 0

    def counted(container: Any) -> Any:
        nonlocal containers
        containers += 1
        if containers > MAX_CONTAINERS_PER_FRAME:
            raise LocalProtocolError(
                f"A frame of {len(body)} bytes holds more than {MAX_CONTAINERS_PER_FRAME} arrays and maps; "
                "a batch holds at most a record and three series columns per event."
            )
        return container

    return msgpack.unpackb(
        body, raw=False, use_list=False, ext_hook=_refuse_ext, list_hook=counted, object_hook=counted,
        max_array_len=MAX_RECORDS_PER_BATCH, max_map_len=MAX_TAGS_PER_RECORD, **options,
    )


def decode_body(body: bytes | bytearray | memoryview) -> Event:
    """Turn one frame body into a validated event."""
    try:
        message = _unpack(body, strict_map_key=True)
    except LocalProtocolError:
        raise
    except UnicodeDecodeError as exc:
        raise LocalProtocolError(_invalid_text_message(body, exc)) from exc
    except msgpack.StackError as exc:
        raise LocalProtocolError(
            "A frame body nests arrays or maps deeper than msgpack's limit (StackError); "
            "trackd events are at most 4 levels deep."
        ) from exc
    except Exception as exc:  # msgpack raises ValueError, TypeError, FormatError...
        # The type name matters: msgpack's FormatError carries no message at all.
        raise LocalProtocolError(f"A frame body is not valid msgpack ({type(exc).__name__}: {exc}).") from exc
    if type(message) is not tuple or not message or type(message[0]) is not int:
        raise LocalProtocolError(f"A frame must hold an array starting with an event code, got {_show(message)}.")
    cls = EVENT_TYPES.get(message[0])
    if cls is None:
        raise LocalProtocolError(f"Unknown event code {message[0]}; known codes are {sorted(EVENT_TYPES)}.")
    names = _FIELDS[cls]
    values = message[1:]
    if cls is Hello and len(values) > len(names) and type(values[0]) is int and values[0] > PROTOCOL_VERSION:
        # A newer client's Hello, with fields added after ours: read what this version knows, so
        # that the daemon answers with the version mismatch ("restart the daemon"), not with a
        # count of fields (which a daemon of protocol 6 said to every client of protocol 7).
        values = values[: len(names)]
    if not len(names) - cls._optional <= len(values) <= len(names):
        expected = str(len(names)) if not cls._optional else f"{len(names) - cls._optional} to {len(names)}"
        raise LocalProtocolError(
            f"A {cls.__name__} frame has {counted(len(values), 'field')}; expected {expected} ({', '.join(names)})."
        )
    if cls is Batch and type(values[1]) is tuple:
        # Records arrive as a tuple of tuples; Batch holds a list.
        values = (values[0], list(values[1]))
    fields: dict[str, Any] = dict(zip(names, values))
    try:
        return cls(**fields)
    except LocalProtocolError as exc:
        # Whole and numbered, a frame can be refused alone: the error names its batch or request
        # (a record a later daemon checks more strictly than this client did, see BadBatch).
        number = values[0] if names[0] in ("seq", "request_id") else 0
        if type(number) is int and 1 <= number <= MAX_INT64:
            exc.batch_seq = number if cls is Batch else 0
            exc.request_id = number if names[0] == "request_id" else 0
        raise


def may_begin_hello(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data``, a connection's first bytes, can be the start of a Hello frame: a header,
    then an array of a Hello's fields (protocol 6's five, or more of a later protocol) led by its code."""
    body = data[FRAME_HEADER_SIZE:]
    least = 1 + len(_FIELDS[Hello]) - Hello._optional  # the code, then the fields
    if len(body) >= 1 and not 0x90 + least <= body[0] <= 0x9F:  # a msgpack fixarray
        return False
    return len(body) < 2 or body[1] == _CODES[Hello]


def _invalid_text_message(body: bytes | bytearray | memoryview, exc: UnicodeDecodeError) -> str:
    """Name the field whose text is not UTF-8 (only on this error path: decoding again costs)."""
    where = "A text field"
    try:
        # surrogateescape keeps the bad bytes as lone surrogates, so the walk can find them.
        message = _unpack(body, unicode_errors="surrogateescape", strict_map_key=False)
        where = _find_invalid_text(message) or where
    except (Exception, RecursionError):
        pass
    return f"{where} is not valid UTF-8 ({exc.reason}: {exc.object[exc.start:exc.end]!r}); text must be UTF-8."


def _find_invalid_text(message: Any) -> str | None:
    if type(message) is not tuple or not message:
        return None
    cls = EVENT_TYPES.get(message[0]) if type(message[0]) is int else None
    event = cls.__name__ if cls is not None else f"event {message[0]!r}"
    names = _FIELDS[cls] if cls is not None else ()
    for index, value in enumerate(message[1:]):
        field = names[index] if index < len(names) else str(index + 1)
        if cls is Batch and field == "records" and type(value) is tuple:
            for number, record in enumerate(value):
                fields = _record_fields(record)
                for position, item in enumerate(record[1:] if type(record) is tuple else ()):
                    name = fields[position] if position < len(fields) else str(position + 1)
                    if _holds_invalid_text(item):
                        return f"Batch.records[{number}] field {name!r}"
        elif _holds_invalid_text(value):
            return f"{event}.{field}"
    return None


def _record_fields(record: object) -> tuple[str, ...]:
    if type(record) is not tuple or not record or type(record[0]) is not int:
        return ()
    try:
        return RECORD_FIELDS[RecordKind(record[0])]
    except ValueError:
        return ()


def _holds_invalid_text(value: object) -> bool:
    if type(value) is str:
        return not value.isascii() and any("\udc80" <= char <= "\udcff" for char in value)
    if type(value) is tuple:
        return any(_holds_invalid_text(item) for item in value)
    if type(value) is dict:
        return any(_holds_invalid_text(key) or _holds_invalid_text(item) for key, item in value.items())
    return False


def _refuse_ext(code: int, data: bytes) -> Any:
    raise LocalProtocolError(f"msgpack extension types are not part of the protocol, got type {code}.")


__all__ = ["EVENT_TYPES", "FRAME_HEADER_SIZE", "decode_body", "decode_header", "encode_frame", "may_begin_hello"]
