"""Batches may follow the Hello before the Welcome: a process killed while its daemon has not answered has sent them.

A process that started a run and logged while its daemon was stopped (SIGSTOP) or busy, and was
then SIGKILLed, left nothing in the store, not even the run: its first connection waited for the
Welcome before sending any batch, so they were all in the killed process's memory. Sent behind
the Hello, they wait in the socket, and the daemon reads them when it resumes.
"""

from __future__ import annotations

import pytest

from trackd.errors import LocalProtocolError, RemoteProtocolError
from trackd.protocol import Batch, Connection, ErrorCode, ErrorReply, GetExperiment, OwnedRuns, Role, State

from protocol_helpers import HELLO, WELCOME, ConnectionPair

OWNED = OwnedRuns(run_ids=("run1",), spool_path="/tmp/spool/client-1.spool")
METRIC = (1, "run1", "loss", 0.5, 0, 0)


def test_a_daemon_that_answers_the_hello_first_reads_the_batches_sent_with_it_in_open() -> None:
    client, daemon = Connection(Role.CLIENT), Connection(Role.DAEMON)
    first, second = Batch(seq=1, records=[METRIC]), Batch(seq=2, records=[METRIC])
    # One write, as a daemon stopped meanwhile finds them in its socket when it resumes.
    daemon.receive_data(client.send(HELLO) + client.send(OWNED) + client.send(first) + client.send(second))
    assert daemon.next_event() == HELLO
    client.receive_data(daemon.send(WELCOME))  # as the daemon does, before it reads on
    assert [daemon.next_event(), daemon.next_event(), daemon.next_event()] == [OWNED, first, second]
    assert (client.state, daemon.state) == (State.AWAIT_WELCOME, State.OPEN)
    assert client.next_event() == WELCOME
    assert client.state is State.OPEN
    client.send(Batch(seq=3, records=[METRIC]))  # and on, once OPEN


def test_batches_sent_ahead_keep_the_order_of_their_numbers_on_the_connection() -> None:
    pair = ConnectionPair()
    pair.send(Role.CLIENT, HELLO, Batch(seq=1, records=[METRIC]), Batch(seq=2, records=[METRIC]))
    pair.send(Role.DAEMON, WELCOME)
    # A client resending, on the same connection, a batch it sent ahead would break the rule that
    # each number is above the last one received: the client resends nothing it sent ahead.
    with pytest.raises(RemoteProtocolError, match="^Batch.seq 2 arrived after batch 2 on this connection"):
        pair.send(Role.CLIENT, Batch(seq=2, records=[METRIC]))


def test_a_request_still_waits_for_the_welcome() -> None:
    pair = ConnectionPair()
    pair.send(Role.CLIENT, HELLO, Batch(seq=1, records=[METRIC]))
    with pytest.raises(LocalProtocolError, match="^can't send GetExperiment as client in state AWAIT_WELCOME$"):
        pair.client.send(GetExperiment(request_id=1, name="x", create=False))


def test_a_refusal_after_batches_sent_ahead_closes_the_connection() -> None:
    pair = ConnectionPair()
    pair.send(Role.CLIENT, HELLO, Batch(seq=1, records=[METRIC]))
    refusal = ErrorReply(request_id=0, code=ErrorCode.VERSION_MISMATCH, message="Another protocol version.")
    assert pair.send(Role.DAEMON, refusal) == [refusal]
    assert pair.client.state is State.CLOSED
