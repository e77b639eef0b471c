"""Garbage from a client: whatever bytes arrive, the daemon's Connection raises RemoteProtocolError or nothing.

The daemon runs one Connection per client in one process, so any other exception escaping
receive_data/next_event would be a crash that a single bad client could cause.
"""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackd.errors import RemoteProtocolError
from trackd.protocol import EVENT_TYPES, MAX_FRAME_SIZE, Batch, ConnectionClosed, NeedData, encode_frame

from protocol_helpers import open_pair
from test_frames import FRAMES

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def feed(data: bytes, chunk_size: int = 0) -> None:
    """Feed ``data`` to an OPEN daemon Connection, then EOF; fail on any exception but RemoteProtocolError."""
    daemon = open_pair().daemon
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] if chunk_size else [data]
    try:
        for chunk in [*chunks, b""]:
            daemon.receive_data(chunk)
            while not isinstance(event := daemon.next_event(), NeedData):
                if isinstance(event, ConnectionClosed):
                    return
    except RemoteProtocolError:
        return
    except Exception as exc:  # noqa: BLE001 - the point of this file
        pytest.fail(f"{type(exc).__name__} escaped the protocol on {data[:80]!r}: {exc}")


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
codes = st.sampled_from(sorted(EVENT_TYPES)) | st.integers(min_value=-5, max_value=300)
valid_frames = st.sampled_from([data for _, data in FRAMES])


@FAST
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=7))
def test_random_bytes(data: bytes, chunk_size: int) -> None:
    feed(data, chunk_size)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_with_a_valid_header(body: bytes) -> None:
    feed(frame(body))


@FAST
@given(msgpack_values)
def test_random_msgpack_values(value: object) -> None:
    feed(frame(msgpack.packb(value, use_bin_type=True)))


@FAST
@given(codes, st.lists(msgpack_values, max_size=8))
def test_random_fields_after_an_event_code(code: int, fields: list[object]) -> None:
    feed(frame(msgpack.packb([code, *fields], use_bin_type=True)))


records = st.lists(st.tuples(st.integers(min_value=0, max_value=9), st.lists(msgpack_values, max_size=7)), max_size=4)


@FAST
@given(st.integers(min_value=0, max_value=8), records)
def test_random_records_in_a_batch(seq: int, kinds_and_fields: list[tuple[int, list[object]]]) -> None:
    batch = [3, seq, [[kind, *fields] for kind, fields in kinds_and_fields]]
    feed(frame(msgpack.packb(batch, use_bin_type=True)))


@FAST
@given(valid_frames, st.data())
def test_mutated_valid_frames(data: bytes, draw: st.DataObject) -> None:
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(min_value=1, max_value=4))):
        operation = draw.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw.draw(st.integers(min_value=0, max_value=max(len(mutated) - 1, 0)))
        if operation == "flip" and mutated:
            mutated[position] ^= draw.draw(st.integers(min_value=1, max_value=255))
        elif operation == "insert":
            mutated.insert(position, draw.draw(st.integers(min_value=0, max_value=255)))
        elif operation == "delete" and mutated:
            del mutated[position]
        else:
            del mutated[position:]
    feed(bytes(mutated), draw.draw(st.integers(min_value=0, max_value=5)))


@FAST
@given(valid_frames, st.binary(min_size=1, max_size=40))
def test_valid_frame_followed_by_garbage(data: bytes, garbage: bytes) -> None:
    feed(data + garbage)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from([b"\x91", b"\x81\xa1k", b"\x92\x03"]))
def test_deeply_nested_arrays_and_maps(depth: int, opener: bytes) -> None:
    feed(frame(opener * depth + b"\xc0"))


@FAST
@given(st.integers(min_value=-128, max_value=127), st.binary(max_size=20), st.sampled_from([0, 1, 2]))
def test_ext_types(code: int, payload: bytes, where: int) -> None:
    # Hand-packed, because msgpack.ExtType refuses the negative (reserved) codes such as -1, the timestamp.
    ext = b"\xc7" + bytes([len(payload), code & 0xFF]) + payload
    body = [b"\x92\x04" + ext, b"\x93\x03\x01\x91" + ext, b"\x94\x0a\x01" + ext + b"\xa1m"][where]
    feed(frame(body))


@FAST
@given(st.sampled_from([b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xe2\x82", b"\xf4\x90\x80\x80"]), st.booleans())
def test_invalid_utf8_strings(bad: bytes, as_map_key: bool) -> None:
    string = bytes([0xA0 | len(bad)]) + bad
    body = b"\x93\x09\x01\x81" + string + b"\xa1v" if as_map_key else b"\x93\x09\x01" + string
    feed(frame(body))


@FAST
@given(st.integers(min_value=MAX_FRAME_SIZE + 1, max_value=2**32 - 1), st.binary(max_size=20))
def test_huge_declared_frame_lengths(size: int, rest: bytes) -> None:
    feed(size.to_bytes(4, "big") + rest)


@FAST
@given(st.sampled_from([b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9\x00", b"\xdc", b"\xde", b"\xda", b"\xc5"]), st.binary(min_size=4, max_size=4))
def test_huge_declared_msgpack_lengths(marker: bytes, length: bytes) -> None:
    # array32, map32, str32, bin32, ext32, array16, map16, str16, bin16 claiming far more than the body holds.
    feed(frame(b"\x93\x03\x01" + marker + length))


def test_timestamp_ext_is_refused() -> None:
    # msgpack decodes ext type -1 into a Timestamp without calling ext_hook; the field checks refuse it.
    daemon = open_pair().daemon
    daemon.receive_data(frame(b"\x92\x05\xd6\xff\x00\x00\x00\x01"))
    with pytest.raises(RemoteProtocolError, match="Timestamp"):
        daemon.next_event()


@pytest.mark.parametrize(
    "body",
    [
        # One array of 16 M empty maps: each is 1 byte on the wire and a 64-byte dict decoded.
        pytest.param(b"\xdd" + (MAX_FRAME_SIZE - 16).to_bytes(4, "big") + b"\x80" * (MAX_FRAME_SIZE - 16), id="one-array"),
        # A Batch whose records are 300 arrays of 50,000 empty maps each: every array within limits.
        pytest.param(b"\x93\x03\x01\xdc\x01\x2c" + (b"\xdc\xc3\x50" + b"\x80" * 50_000) * 300, id="nested"),
    ],
)
def test_a_frame_of_tiny_containers_is_refused_without_gigabytes_of_objects(body: bytes) -> None:
    # Unpacked whole, the first took 1.85 s and 1.3 GB: one frame could stall the daemon or get it killed.
    tracemalloc.start()
    try:
        feed(frame(body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024 * 1024


def test_a_large_valid_batch_is_unpacked_whole_past_the_counted_size() -> None:
    records = [(1, "a" * 32, f"metric_{i % 100}", i / 3, 1_700_000_000_000 + i, i) for i in range(40_000)]
    data = encode_frame(Batch(seq=1, records=records))
    assert len(data) > 1024 * 1024
    daemon = open_pair().daemon
    daemon.receive_data(data)
    event = daemon.next_event()
    assert isinstance(event, Batch) and event.records == records
