"""OwnedRuns may follow the Hello before the Welcome: a client killed while its daemon has not answered has told its runs.

A rank 0 SIGKILLed while its daemon was stopped had sent only its Hello (the client sent nothing
before the Welcome), and the shared run stayed RUNNING for ever (chaos round 4400-38).
"""

from __future__ import annotations

import pytest

from trackd.errors import LocalProtocolError
from trackd.protocol import Connection, Flush, OwnedRuns, Role, State

from protocol_helpers import HELLO, WELCOME, ConnectionPair

OWNED = OwnedRuns(run_ids=("run1",), spool_path="/tmp/spool/client-1.spool")


def test_a_daemon_that_answers_the_hello_first_reads_the_owned_runs_sent_with_it() -> None:
    client, daemon = Connection(Role.CLIENT), Connection(Role.DAEMON)
    data = client.send(HELLO) + client.send(OWNED)  # one write: the daemon reads both at once
    daemon.receive_data(data)
    assert daemon.next_event() == HELLO
    daemon.send(WELCOME)  # as the daemon does, before it reads on
    assert daemon.next_event() == OWNED
    assert daemon.state is State.OPEN


def test_owned_runs_before_the_welcome_leave_the_handshake_as_it_was() -> None:
    pair = ConnectionPair()
    assert pair.send(Role.CLIENT, HELLO, OWNED) == [HELLO, OWNED]
    assert pair.client.state is State.AWAIT_WELCOME
    assert pair.send(Role.DAEMON, WELCOME) == [WELCOME]
    assert (pair.client.state, pair.daemon.state) == (State.OPEN, State.OPEN)


def test_a_flush_still_waits_for_the_welcome() -> None:
    # Batches may go before the Welcome now (test_batches_before_welcome.py); requests may not.
    pair = ConnectionPair()
    pair.send(Role.CLIENT, HELLO, OWNED)
    with pytest.raises(LocalProtocolError, match="^can't send Flush as client in state AWAIT_WELCOME$"):
        pair.client.send(Flush(request_id=1))
