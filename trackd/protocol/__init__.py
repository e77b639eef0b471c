"""The trackd wire protocol: framed msgpack events, pure, with no I/O.

Adapters in ``trackd.client`` and ``trackd.daemon`` move bytes; this package turns them into
events and back, and knows which events are legal when. See docs/protocol.md.
"""

from __future__ import annotations

from ._connection import EVENT_TRIGGERED_TRANSITIONS, NEED_DATA, Connection, NeedData, Role, State
from ._events import (
    Ack,
    Batch,
    ConnectionClosed,
    CreateExperiment,
    Dropped,
    ErrorCode,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    FlushDone,
    GetExperiment,
    GetStatus,
    Hello,
    Rejected,
    StatusReply,
    Welcome,
)
from ._frames import EVENT_TYPES, decode_body, decode_header, encode_frame
from ._limits import (
    FRAME_HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_INLINE_ARTIFACT_SIZE,
    MAX_NAME_LENGTH,
    MAX_RECORDS_PER_BATCH,
    MAX_TAGS_PER_RECORD,
    MAX_TEXT_LENGTH,
    PROTOCOL_VERSION,
)
from ._records import RECORD_FIELDS, Record, RecordKind, check_record

__all__ = [
    "EVENT_TRIGGERED_TRANSITIONS",
    "EVENT_TYPES",
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_INLINE_ARTIFACT_SIZE",
    "MAX_NAME_LENGTH",
    "MAX_RECORDS_PER_BATCH",
    "MAX_TAGS_PER_RECORD",
    "MAX_TEXT_LENGTH",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "RECORD_FIELDS",
    "Ack",
    "Batch",
    "Connection",
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
    "NeedData",
    "Record",
    "RecordKind",
    "Rejected",
    "StatusReply",
    "Role",
    "State",
    "Welcome",
    "check_record",
    "decode_body",
    "decode_header",
    "encode_frame",
]
