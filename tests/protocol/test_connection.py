"""The state machine: a client and a daemon Connection talking with no socket between them."""

from __future__ import annotations

import pytest

from trackd.errors import LocalProtocolError, RemoteProtocolError
from trackd.protocol import (
    MAX_FRAME_SIZE,
    MAX_INLINE_ARTIFACT_SIZE,
    NEED_DATA,
    PROTOCOL_VERSION,
    Ack,
    BadBatch,
    Batch,
    Connection,
    ConnectionClosed,
    CreateExperiment,
    ErrorCode,
    ErrorReply,
    Event,
    ExperimentReply,
    Flush,
    FlushDone,
    GetExperiment,
    GetStatus,
    Hello,
    MAX_OWNED_RUNS,
    OwnedRuns,
    Rejected,
    Role,
    State,
    StatusReply,
    Welcome,
    encode_frame,
)

from protocol_helpers import HELLO, WELCOME, ConnectionPair, open_pair, receive_all

METRIC = (1, "run1", "loss", 0.31, 1_700_000_000_000, 7)
PARAM = (2, "run1", "lr", "0.001")


def test_handshake_moves_both_sides_to_open() -> None:
    pair = ConnectionPair()
    assert (pair.client.state, pair.daemon.state) == (State.AWAIT_HELLO, State.AWAIT_HELLO)
    assert pair.send(Role.CLIENT, HELLO) == [HELLO]
    assert (pair.client.state, pair.daemon.state) == (State.AWAIT_WELCOME, State.AWAIT_WELCOME)
    assert pair.send(Role.DAEMON, WELCOME) == [WELCOME]
    assert (pair.client.state, pair.daemon.state) == (State.OPEN, State.OPEN)


def test_batches_arrive_in_order_and_are_acked() -> None:
    pair = open_pair()
    batches = [Batch(seq=1, records=[METRIC]), Batch(seq=2, records=[PARAM, METRIC])]
    assert pair.send(Role.CLIENT, *batches) == batches
    assert pair.send(Role.DAEMON, Ack(seq=2)) == [Ack(seq=2)]


def test_rejected_names_the_refused_item() -> None:
    pair = open_pair()
    pair.send(Role.CLIENT, Batch(seq=1, records=[PARAM]))
    rejected = Rejected(seq=1, item="param 'lr' of run run1", message="changed from '0.01' to '0.001'")
    assert pair.send(Role.DAEMON, rejected, Ack(seq=1)) == [rejected, Ack(seq=1)]


def test_flush_is_answered_by_flush_done() -> None:
    pair = open_pair()
    assert pair.send(Role.CLIENT, Batch(seq=1, records=[METRIC]), Flush(request_id=1)) == [
        Batch(seq=1, records=[METRIC]),
        Flush(request_id=1),
    ]
    assert pair.send(Role.DAEMON, Ack(seq=1), FlushDone(request_id=1, acked_seq=1)) == [
        Ack(seq=1),
        FlushDone(request_id=1, acked_seq=1),
    ]


def test_experiment_requests_get_replies_by_request_id() -> None:
    pair = open_pair()
    create = CreateExperiment(request_id=1, name="exp", artifact_location=None, tags={"team": "ml"})
    get = GetExperiment(request_id=2, name="missing", create=False)
    assert pair.send(Role.CLIENT, create, get) == [create, get]
    replies = [ExperimentReply(request_id=1, experiment_id="123"), ExperimentReply(request_id=2, experiment_id=None)]
    assert pair.send(Role.DAEMON, *replies) == replies


def test_failed_request_gets_error_reply_and_connection_stays_open() -> None:
    pair = open_pair()
    pair.send(Role.CLIENT, CreateExperiment(request_id=3, name="exp", artifact_location=None, tags={}))
    error = ErrorReply(request_id=3, code=ErrorCode.REQUEST_FAILED, message="Experiment 'exp' already exists.")
    assert pair.send(Role.DAEMON, error) == [error]
    assert (pair.client.state, pair.daemon.state) == (State.OPEN, State.OPEN)


def test_status_request_gets_status_reply() -> None:
    pair = open_pair()
    assert pair.send(Role.CLIENT, GetStatus(request_id=1)) == [GetStatus(request_id=1)]
    reply = StatusReply(request_id=1, status={"connections": 1, "store": "/m"})
    assert pair.send(Role.DAEMON, reply) == [reply]


def test_version_mismatch_gets_error_reply_and_closes_both_sides() -> None:
    pair = ConnectionPair()
    hello = Hello(protocol_version=PROTOCOL_VERSION + 1, client_id="c", pid=1, host="h", store_root="/m")
    assert pair.send(Role.CLIENT, hello) == [hello]
    error = ErrorReply(request_id=0, code=ErrorCode.VERSION_MISMATCH, message="Protocol 2 is not 1.")
    assert pair.send(Role.DAEMON, error) == [error]
    assert (pair.client.state, pair.daemon.state) == (State.CLOSED, State.CLOSED)
    assert pair.close(Role.DAEMON) == [ConnectionClosed()]


def test_daemon_closing_an_open_connection_is_seen_as_connection_closed() -> None:
    pair = open_pair()
    error = ErrorReply(request_id=0, code=ErrorCode.SHUTTING_DOWN, message="The daemon is stopping.")
    assert pair.send(Role.DAEMON, error) == [error]
    assert pair.close(Role.DAEMON) == [ConnectionClosed()]
    assert pair.client.state is State.CLOSED


def test_client_closing_is_seen_by_the_daemon_as_connection_closed() -> None:
    pair = open_pair()
    assert pair.close(Role.CLIENT) == [ConnectionClosed()]
    assert pair.daemon.state is State.CLOSED


def test_eof_before_any_frame_is_connection_closed() -> None:
    conn = Connection(Role.DAEMON)
    assert receive_all(conn, b"") == [ConnectionClosed()]


def test_daemon_may_explain_a_protocol_error_after_the_peer_broke_the_protocol() -> None:
    # The daemon answers garbage with ErrorReply(request_id=0) before closing, from state CLOSED.
    pair = open_pair()
    pair.daemon.receive_data(b"\x00\x00\x00\x01\xc1")  # 0xc1 is never valid msgpack
    with pytest.raises(RemoteProtocolError):
        pair.daemon.next_event()
    error = ErrorReply(request_id=0, code=ErrorCode.BAD_FRAME, message="A frame body is not valid msgpack.")
    assert pair.send(Role.DAEMON, error) == [error]


@pytest.mark.parametrize(
    ("body", "batch_seq", "request_id"),
    [
        (b"\x93\x03\x07\x91\x93\x02\xa1r\xa1k", 7, 0),  # Batch 7, its param record without a value
        (b"\x95\x07\x05\xa0\xc0\x80", 0, 5),  # CreateExperiment 5 with an empty name
        (b"\x93\x03\x00\x90", 0, 0),  # Batch 0: no batch has that number
        (b"\x93\x03\x07\x92", 0, 0),  # records not an array
        (b"\x94\x03\x07\x90\x01", 0, 0),  # a Batch of three fields: not one this protocol can number
    ],
    ids=["batch", "request", "batch-seq-0", "records-not-an-array", "extra-field"],
)
def test_a_frame_that_breaks_the_protocol_names_its_batch_or_request_when_whole_and_numbered(
    body: bytes, batch_seq: int, request_id: int
) -> None:
    # The daemon tells the client which batch or request it will never take (BadBatch, or an
    # ErrorReply with its request id), so the client stops sending it; unnamed, it went again
    # on every connection.
    pair = open_pair()
    pair.daemon.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError) as caught:
        pair.daemon.next_event()
    assert (caught.value.batch_seq, caught.value.request_id) == (batch_seq, request_id)
    named = BadBatch(seq=7, message=str(caught.value))
    assert pair.send(Role.DAEMON, named) == [named]  # from CLOSED, before the ErrorReply that closes


def _at(state: State) -> ConnectionPair:
    pair = ConnectionPair()
    if state is not State.AWAIT_HELLO:
        pair.send(Role.CLIENT, HELLO)
    if state in (State.OPEN, State.CLOSED):
        pair.send(Role.DAEMON, WELCOME)
    if state is State.CLOSED:
        pair.close(Role.CLIENT)
        pair.close(Role.DAEMON)
    return pair


ILLEGAL_SENDS = [
    (State.AWAIT_HELLO, Role.CLIENT, Batch(seq=1, records=[METRIC])),
    (State.AWAIT_HELLO, Role.CLIENT, Flush(request_id=1)),
    (State.AWAIT_HELLO, Role.DAEMON, WELCOME),
    (State.AWAIT_HELLO, Role.DAEMON, Ack(seq=1)),
    (State.AWAIT_WELCOME, Role.CLIENT, Flush(request_id=1)),
    (State.AWAIT_WELCOME, Role.CLIENT, HELLO),
    (State.AWAIT_WELCOME, Role.DAEMON, Ack(seq=0)),
    (State.OPEN, Role.CLIENT, HELLO),
    (State.OPEN, Role.CLIENT, Ack(seq=1)),
    (State.OPEN, Role.DAEMON, WELCOME),
    (State.OPEN, Role.DAEMON, Batch(seq=1, records=[METRIC])),
    (State.OPEN, Role.DAEMON, GetStatus(request_id=1)),
    (State.CLOSED, Role.CLIENT, Batch(seq=1, records=[METRIC])),
    (State.CLOSED, Role.DAEMON, Ack(seq=1)),
    (State.OPEN, Role.CLIENT, ConnectionClosed()),
]


def _case_id(case: object) -> str:
    return case.name if isinstance(case, (State, Role)) else type(case).__name__


@pytest.mark.parametrize(("state", "role", "event"), ILLEGAL_SENDS, ids=_case_id)
def test_illegal_send_raises_local_protocol_error_naming_event_role_and_state(
    state: State, role: Role, event: Event
) -> None:
    conn = _at(state).conn(role)
    expected = f"can't send {type(event).__name__} as {role.value} in state {state.name}"
    with pytest.raises(LocalProtocolError, match=f"^{expected}$"):
        conn.send(event)
    assert conn.state is state


# A CLOSED connection reached by EOF cannot be fed more bytes, and ConnectionClosed has no frame.
ILLEGAL_RECEIVES = [case for case in ILLEGAL_SENDS if case[0] is not State.CLOSED and case[2] != ConnectionClosed()]


@pytest.mark.parametrize(("state", "role", "event"), ILLEGAL_RECEIVES, ids=_case_id)
def test_illegal_event_from_the_peer_raises_remote_protocol_error(state: State, role: Role, event: Event) -> None:
    receiver = _at(state).peer(role)
    receiver.receive_data(encode_frame(event))
    expected = f"can't receive {type(event).__name__} as {role.value} in state {state.name}"
    with pytest.raises(RemoteProtocolError, match=f"^{expected}$"):
        receiver.next_event()
    assert receiver.state is State.CLOSED


def test_event_after_the_daemon_refused_the_hello_raises_remote_protocol_error() -> None:
    pair = ConnectionPair()
    pair.send(Role.CLIENT, HELLO)
    pair.send(Role.DAEMON, ErrorReply(request_id=0, code=ErrorCode.FORBIDDEN, message="Not your store."))
    pair.client.receive_data(encode_frame(Ack(seq=1)))
    with pytest.raises(RemoteProtocolError, match="^can't receive Ack as daemon in state CLOSED$"):
        pair.client.next_event()


def test_truncated_frame_at_eof_raises_remote_protocol_error() -> None:
    daemon = open_pair().daemon
    frame = encode_frame(Batch(seq=1, records=[METRIC]))
    daemon.receive_data(frame[:-1])
    assert daemon.next_event() is NEED_DATA
    daemon.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=rf"middle of a frame \({len(frame) - 1} bytes"):
        daemon.next_event()


def test_truncated_header_at_eof_raises_remote_protocol_error() -> None:
    daemon = open_pair().daemon
    daemon.receive_data(b"\x00\x00")
    daemon.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        daemon.next_event()


def test_complete_frames_before_a_truncated_one_are_still_delivered() -> None:
    daemon = open_pair().daemon
    frame = encode_frame(Batch(seq=1, records=[METRIC]))
    daemon.receive_data(frame + frame[:5])
    daemon.receive_data(b"")
    assert daemon.next_event() == Batch(seq=1, records=[METRIC])
    with pytest.raises(RemoteProtocolError):
        daemon.next_event()


def test_oversized_header_is_refused_before_the_body_arrives() -> None:
    daemon = open_pair().daemon
    daemon.receive_data((MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match=f"announces {MAX_FRAME_SIZE + 1} bytes"):
        daemon.next_event()
    assert daemon.state is State.CLOSED


def test_header_of_exactly_max_frame_size_waits_for_the_body() -> None:
    daemon = open_pair().daemon
    daemon.receive_data(MAX_FRAME_SIZE.to_bytes(4, "big") + b"\x93")
    assert daemon.next_event() is NEED_DATA


def test_send_refuses_a_frame_over_max_frame_size() -> None:
    client = open_pair().client
    artifact = (7, "run1", "big.bin", bytes(MAX_INLINE_ARTIFACT_SIZE), None)
    with pytest.raises(LocalProtocolError, match="exceeds MAX_FRAME_SIZE"):
        client.send(Batch(seq=1, records=[artifact, artifact]))


def test_body_that_is_not_msgpack_raises_remote_protocol_error() -> None:
    daemon = open_pair().daemon
    daemon.receive_data(b"\x00\x00\x00\x02\x91\xc1")
    with pytest.raises(RemoteProtocolError, match="not valid msgpack"):
        daemon.next_event()


def test_unknown_event_code_raises_remote_protocol_error() -> None:
    daemon = open_pair().daemon
    daemon.receive_data(b"\x00\x00\x00\x02\x91\x7f")
    with pytest.raises(RemoteProtocolError, match="Unknown event code 127"):
        daemon.next_event()


def test_wrong_field_count_raises_remote_protocol_error_listing_the_fields() -> None:
    daemon = open_pair().daemon
    daemon.receive_data(b"\x00\x00\x00\x04\x93\x04\x01\x02")  # Ack with two fields
    with pytest.raises(RemoteProtocolError, match=r"Ack frame has 2 fields; expected 1 \(seq\)"):
        daemon.next_event()


def test_invalid_field_value_from_the_peer_raises_remote_protocol_error() -> None:
    client = open_pair().client
    client.receive_data(b"\x00\x00\x00\x03\x92\x04\xff")  # Ack(seq=-1)
    with pytest.raises(RemoteProtocolError, match=r"Ack\.seq must be an integer from 0"):
        client.next_event()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x93\x0f\xa2r1\xa0", r"OwnedRuns\.run_ids must be an array"),  # a str, not an array of them
        (b"\x93\x0f\x91\x07\xa0", r"OwnedRuns\.run_ids\[0\] must be a run id the store takes"),
        (b"\x93\x0f\x91\xa0\xa0", r"OwnedRuns\.run_ids\[0\] must be a run id the store takes"),
        (b"\x93\x0f\x90\xc0", r"OwnedRuns\.spool_path must be a string"),
    ],
    ids=["run_ids-str", "run-id-int", "run-id-empty", "spool_path-nil"],
)
def test_owned_runs_with_a_bad_field_from_the_client_is_refused(body: bytes, message: str) -> None:
    daemon = open_pair().daemon
    daemon.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError, match=message):
        daemon.next_event()


def test_owned_runs_is_bounded_and_legal_only_from_an_open_client() -> None:
    with pytest.raises(LocalProtocolError, match=f"at most {MAX_OWNED_RUNS} run ids"):
        OwnedRuns(run_ids=tuple(f"r{i}" for i in range(MAX_OWNED_RUNS + 1)), spool_path="")
    with pytest.raises(LocalProtocolError, match="can't send OwnedRuns as client in state AWAIT_HELLO"):
        Connection(Role.CLIENT).send(OwnedRuns(run_ids=("r",), spool_path=""))
    pair = open_pair()
    assert pair.send(Role.CLIENT, OwnedRuns(run_ids=("r",), spool_path="/s")) == [OwnedRuns(run_ids=("r",), spool_path="/s")]
    with pytest.raises(LocalProtocolError, match="can't send OwnedRuns as daemon"):
        pair.daemon.send(OwnedRuns(run_ids=(), spool_path=""))


def test_receive_data_after_eof_is_a_local_error() -> None:
    conn = Connection(Role.DAEMON)
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the peer closed"):
        conn.receive_data(b"\x00")
