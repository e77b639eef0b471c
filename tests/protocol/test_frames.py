"""Framing: one table of (event, bytes) cases drives both encoding and decoding.

Each expected frame was written by hand from the spec in docs/protocol.md: a 4-byte big-endian
body length, then a msgpack array ``[code, field, ...]`` with the fields in declaration order.
"""

from __future__ import annotations

import pytest

import trackd.protocol
from trackd.protocol import (
    EVENT_TYPES,
    NEED_DATA,
    Ack,
    BadBatch,
    Batch,
    ConnectionClosed,
    CreateExperiment,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    FlushDone,
    GetExperiment,
    Dropped,
    GetStatus,
    Hello,
    OwnedRuns,
    RecordKind,
    Rejected,
    SpooledWill,
    StatusReply,
    Welcome,
    decode_body,
    decode_header,
    encode_frame,
)

from protocol_helpers import receiver_for

# msgpack reminders: 0x9N array of N, 0xaN str of N bytes, 0x00-0x7f and 0xe0-0xff fixints, 0xc0 nil,
# 0xc2/0xc3 false/true, 0x8N map of N, 0xc4 bin8, 0xcb float64, 0xcd uint16.
FRAMES: list[tuple[Event, bytes]] = [
    (Hello(protocol_version=1, client_id="c1", pid=42, host="h", store_root="/m"),
     b"\x00\x00\x00\x0d" b"\x97\x01" b"\x01\xa2c1\x2a\xa1h\xa2/m\xc0"),
    # A control connection (trackd daemon status) has no store root.
    (Hello(protocol_version=1, client_id="c1", pid=42, host="", store_root=""),
     b"\x00\x00\x00\x0a" b"\x97\x01" b"\x01\xa2c1\x2a\xa0\xa0\xc0"),
    # The artifact root the store's new experiments go under (protocol 7).
    (Hello(protocol_version=7, client_id="c1", pid=42, host="h", store_root="/m", artifact_root="/m"),
     b"\x00\x00\x00\x0f" b"\x97\x01" b"\x07\xa2c1\x2a\xa1h\xa2/m\xa2/m"),
    (Welcome(protocol_version=1, daemon_pid=7, resume_seq=0),
     b"\x00\x00\x00\x05" b"\x94\x02" b"\x01\x07\x00"),
    (Welcome(protocol_version=1, daemon_pid=7, resume_seq=300),
     b"\x00\x00\x00\x07" b"\x94\x02" b"\x01\x07\xcd\x01\x2c"),
    (Batch(seq=1, records=[]),
     b"\x00\x00\x00\x04" b"\x93\x03" b"\x01\x90"),
    # metric: value 0.5 as float64, timestamp_ms 1000 as uint16, step -1 as a negative fixint.
    (Batch(seq=1, records=[(1, "r", "k", 0.5, 1000, -1)]),
     b"\x00\x00\x00\x17" b"\x93\x03" b"\x01\x91"
     b"\x96\x01\xa1r\xa1k\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00\xcd\x03\xe8\xff"),
    # A metric series: columns of values, timestamps and steps (point i is the i-th of each).
    (Batch(seq=9, records=[(8, "r", "k", (0.5, 2), (1000, 1000), (0, 1))]),
     b"\x00\x00\x00\x1f" b"\x93\x03" b"\x09\x91"
     b"\x96\x08\xa1r\xa1k\x92\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00\x02\x92\xcd\x03\xe8\xcd\x03\xe8\x92\x00\x01"),
    (Batch(seq=2, records=[(2, "r", "lr", "0.1")]),
     b"\x00\x00\x00\x0f" b"\x93\x03" b"\x02\x91" b"\x94\x02\xa1r\xa2lr\xa30.1"),
    (Batch(seq=3, records=[(3, "r", "t", "")]),
     b"\x00\x00\x00\x0b" b"\x93\x03" b"\x03\x91" b"\x94\x03\xa1r\xa1t\xa0"),
    (Batch(seq=4, records=[(4, "r", "t")]),
     b"\x00\x00\x00\x0a" b"\x93\x03" b"\x04\x91" b"\x93\x04\xa1r\xa1t"),
    (Batch(seq=5, records=[(5, "r", "0", "u", "n", 1000, {"a": "b"})]),
     b"\x00\x00\x00\x16" b"\x93\x03" b"\x05\x91" b"\x97\x05\xa1r\xa10\xa1u\xa1n\xcd\x03\xe8\x81\xa1a\xa1b"),
    (Batch(seq=6, records=[(6, "r", 3, 2000, False)]),
     b"\x00\x00\x00\x0d" b"\x93\x03" b"\x06\x91" b"\x95\x06\xa1r\x03\xcd\x07\xd0\xc2"),
    # Inline artifact content travels as msgpack bin, not str.
    (Batch(seq=7, records=[(7, "r", "a.txt", b"hi", None)]),
     b"\x00\x00\x00\x13" b"\x93\x03" b"\x07\x91" b"\x95\x07\xa1r\xa5a.txt\xc4\x02hi\xc0"),
    (Batch(seq=8, records=[(7, "r", "a.txt", None, "/f")]),
     b"\x00\x00\x00\x12" b"\x93\x03" b"\x08\x91" b"\x95\x07\xa1r\xa5a.txt\xc0\xa2/f"),
    (Batch(seq=300, records=[(4, "r", "t"), (2, "r", "k", "v")]),
     b"\x00\x00\x00\x14" b"\x93\x03" b"\xcd\x01\x2c\x92" b"\x93\x04\xa1r\xa1t" b"\x94\x02\xa1r\xa1k\xa1v"),
    (Ack(seq=1),
     b"\x00\x00\x00\x03" b"\x92\x04" b"\x01"),
    (Flush(request_id=1),
     b"\x00\x00\x00\x03" b"\x92\x05" b"\x01"),
    (FlushDone(request_id=1, acked_seq=2),
     b"\x00\x00\x00\x04" b"\x93\x06" b"\x01\x02"),
    (CreateExperiment(request_id=2, name="e", artifact_location=None, tags={}),
     b"\x00\x00\x00\x07" b"\x95\x07" b"\x02\xa1e\xc0\x80"),
    (CreateExperiment(request_id=3, name="e", artifact_location="/a", tags={"k": "v"}),
     b"\x00\x00\x00\x0d" b"\x95\x07" b"\x03\xa1e\xa2/a\x81\xa1k\xa1v"),
    (GetExperiment(request_id=4, name="e", create=True),
     b"\x00\x00\x00\x06" b"\x94\x08" b"\x04\xa1e\xc3"),
    (GetExperiment(request_id=4, name="e", create=False),
     b"\x00\x00\x00\x06" b"\x94\x08" b"\x04\xa1e\xc2"),
    (ExperimentReply(request_id=4, experiment_id="1"),
     b"\x00\x00\x00\x05" b"\x93\x09" b"\x04\xa11"),
    (ExperimentReply(request_id=5, experiment_id=None),
     b"\x00\x00\x00\x04" b"\x93\x09" b"\x05\xc0"),
    (Rejected(seq=1, item="lr", message="changed"),
     b"\x00\x00\x00\x0f" b"\x95\x0a" b"\x01\xa2lr\xa7changed\x01"),
    (Rejected(seq=1, item="m", message="x", events=300),
     b"\x00\x00\x00\x0a" b"\x95\x0a" b"\x01\xa1m\xa1x\xcd\x01\x2c"),
    (ErrorReply(request_id=0, code="bad_frame", message="x"),
     b"\x00\x00\x00\x0f" b"\x94\x0b" b"\x00\xa9bad_frame\xa1x"),
    (ErrorReply(request_id=2, code="request_failed", message="m"),
     b"\x00\x00\x00\x14" b"\x94\x0b" b"\x02\xaerequest_failed\xa1m"),
    (GetStatus(request_id=1),
     b"\x00\x00\x00\x03" b"\x92\x0c" b"\x01"),
    (StatusReply(request_id=1, status={"pending": 0}),
     b"\x00\x00\x00\x0d" b"\x93\x0d" b"\x01\x81\xa7pending\x00"),
    (Dropped(total=5),
     b"\x00\x00\x00\x03" b"\x92\x0e" b"\x05"),
    # The runs a client owns, and its spool file: an array of str, then a str.
    (OwnedRuns(run_ids=("r1", "r2"), spool_path="/s"),
     b"\x00\x00\x00\x0c" b"\x93\x0f" b"\x92\xa2r1\xa2r2\xa2/s"),
    # None owned (every run ended) and no spool folder known.
    (OwnedRuns(run_ids=(), spool_path=""),
     b"\x00\x00\x00\x04" b"\x93\x0f" b"\x90\xa0"),
    # The batch the daemon refuses whole, and why.
    (BadBatch(seq=7, message="x"),
     b"\x00\x00\x00\x05" b"\x93\x10" b"\x07\xa1x"),
    # The runs a spool file's process owned, that process (pid, start time, host), the file, and
    # when the process was last known to run.
    (SpooledWill(run_ids=("r1",), pid=7, started=1234, host="h", spool_path="/s", seen_ms=5),
     b"\x00\x00\x00\x10" b"\x97\x11" b"\x91\xa2r1\x07\xcd\x04\xd2\xa1h\xa2/s\x05"),
    # A start time that could not be read (not Linux).
    (SpooledWill(run_ids=(), pid=7, started=None, host="", spool_path="", seen_ms=0),
     b"\x00\x00\x00\x08" b"\x97\x11" b"\x90\x07\xc0\xa0\xa0\x00"),
]
CASES = [pytest.param(event, data, id=f"{i}-{type(event).__name__}") for i, (event, data) in enumerate(FRAMES)]


@pytest.mark.parametrize(("event", "data"), CASES)
def test_encode_frame_writes_the_expected_bytes(event: Event, data: bytes) -> None:
    assert encode_frame(event) == data


@pytest.mark.parametrize(("event", "data"), CASES)
def test_decode_header_and_body_read_back_the_event(event: Event, data: bytes) -> None:
    assert decode_header(data[:4]) == len(data) - 4
    assert decode_body(data[4:]) == event


@pytest.mark.parametrize(("event", "data"), CASES)
def test_connection_decodes_a_frame_given_in_one_piece(event: Event, data: bytes) -> None:
    conn = receiver_for(event)
    conn.receive_data(data)
    assert conn.next_event() == event
    assert conn.next_event() is NEED_DATA


@pytest.mark.parametrize(("event", "data"), CASES)
def test_connection_decodes_a_frame_fed_one_byte_at_a_time(event: Event, data: bytes) -> None:
    conn = receiver_for(event)
    for byte in data[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(data[-1:])
    assert conn.next_event() == event


@pytest.mark.parametrize(("event", "data"), CASES)
def test_connection_leaves_trailing_data_buffered(event: Event, data: bytes) -> None:
    conn = receiver_for(event)
    conn.receive_data(data + b"\x00\x00\x00")  # the start of the next frame's header
    assert conn.next_event() == event
    assert conn.next_event() is NEED_DATA
    assert conn.buffered_bytes == 3


@pytest.mark.parametrize(("event", "data"), CASES)
def test_connection_decodes_a_frame_followed_by_eof(event: Event, data: bytes) -> None:
    conn = receiver_for(event)
    conn.receive_data(data)
    conn.receive_data(b"")
    assert conn.next_event() == event
    assert conn.next_event() == ConnectionClosed()


def test_every_event_class_has_exactly_one_code() -> None:
    # EVENT_TYPES is a dict literal, so a code written twice would silently drop the first class;
    # comparing against every Event class the package exports catches that.
    exported = {
        obj for obj in vars(trackd.protocol).values()
        if isinstance(obj, type) and issubclass(obj, Event) and obj not in (Event, ConnectionClosed)
    }
    assert sorted(cls.__name__ for cls in EVENT_TYPES.values()) == sorted(cls.__name__ for cls in exported)
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)


def test_codes_are_small_positive_ints() -> None:
    # A fixint code keeps every frame's type in one byte; 0 is left unused.
    assert all(type(code) is int and 1 <= code <= 127 for code in EVENT_TYPES)


def test_table_covers_every_event_type() -> None:
    assert {type(event) for event, _ in FRAMES} == set(EVENT_TYPES.values())


def test_table_covers_every_record_kind() -> None:
    kinds = {record[0] for event, _ in FRAMES if isinstance(event, Batch) for record in event.records}
    assert kinds == {kind.value for kind in RecordKind}


def test_frame_code_byte_matches_event_types() -> None:
    codes = {cls: code for code, cls in EVENT_TYPES.items()}
    for event, data in FRAMES:
        assert data[5] == codes[type(event)], type(event).__name__
