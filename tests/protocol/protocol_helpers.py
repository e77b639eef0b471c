"""Helpers shared by the protocol tests: two Connections that talk with no socket (h11's ConnectionPair)."""

from __future__ import annotations

from trackd.protocol import (
    EVENT_TRIGGERED_TRANSITIONS,
    PROTOCOL_VERSION,
    Connection,
    ConnectionClosed,
    Event,
    Hello,
    NeedData,
    Role,
    Welcome,
)

HELLO = Hello(protocol_version=PROTOCOL_VERSION, client_id="client-1", pid=4242, host="host", store_root="/tmp/mlruns")
WELCOME = Welcome(protocol_version=PROTOCOL_VERSION, daemon_pid=99, resume_seq=0)


def drain(conn: Connection) -> list[Event]:
    """Return every event ``conn`` can produce from what it has buffered, up to NEED_DATA or ConnectionClosed."""
    events: list[Event] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def receive_all(conn: Connection, data: bytes) -> list[Event]:
    """Feed ``data`` to ``conn`` and return the events it yields."""
    conn.receive_data(data)
    return drain(conn)


def sender_of(event_type: type[Event]) -> Role:
    """Which role sends ``event_type``, read from the transition table."""
    (role,) = {role for (_, role, cls) in EVENT_TRIGGERED_TRANSITIONS if cls is event_type}
    return role


class ConnectionPair:
    """A client and a daemon Connection wired back to back."""

    def __init__(self) -> None:
        self.client = Connection(Role.CLIENT)
        self.daemon = Connection(Role.DAEMON)

    def conn(self, role: Role) -> Connection:
        return self.client if role is Role.CLIENT else self.daemon

    def peer(self, role: Role) -> Connection:
        return self.daemon if role is Role.CLIENT else self.client

    def send(self, sender: Role, *events: Event) -> list[Event]:
        """Send ``events`` from ``sender`` in one write; return what the other side receives."""
        data = b"".join(self.conn(sender).send(event) for event in events)
        return receive_all(self.peer(sender), data)

    def close(self, sender: Role) -> list[Event]:
        """``sender`` closes its socket; return what the other side receives."""
        return receive_all(self.peer(sender), b"")

    def handshake(self) -> None:
        assert self.send(Role.CLIENT, HELLO) == [HELLO]
        assert self.send(Role.DAEMON, WELCOME) == [WELCOME]


def open_pair() -> ConnectionPair:
    """A pair past the handshake, both sides OPEN."""
    pair = ConnectionPair()
    pair.handshake()
    return pair


def receiver_for(event: Event) -> Connection:
    """A Connection in a state where receiving ``event`` from its peer is legal."""
    if isinstance(event, Hello):
        return Connection(Role.DAEMON)
    if isinstance(event, Welcome):
        client = Connection(Role.CLIENT)
        client.send(HELLO)
        return client
    return open_pair().peer(sender_of(type(event)))
