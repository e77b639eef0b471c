"""The socket adapter's waits: a daemon that is stopped, not dead, accepts connections and bytes and
never answers, and the sender thread must still be able to stop waiting on it when poked."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import short_socket_path

from trackd.client._transport import Interrupt, Transport, handshake, make_hello
from trackd.errors import DaemonUnavailable


@pytest.fixture
def silent_daemon() -> Iterator[Path]:
    """A listening socket nobody serves, like a SIGSTOPped daemon's: the kernel completes connects,
    and nothing is ever read or answered."""
    path = short_socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    yield path
    listener.close()
    path.unlink()
    path.parent.rmdir()


class Waker:
    """The sender's side of an Interrupt: a pipe to poke, and the flag that says to give up."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.given_up = threading.Event()
        self.interrupt = Interrupt(self.read_fd, self.given_up.is_set)

    def poke(self) -> None:
        os.write(self.write_fd, b"\0")

    def give_up(self) -> None:
        self.given_up.set()
        self.poke()


@pytest.fixture
def waker() -> Iterator[Waker]:
    waker = Waker()
    yield waker
    os.close(waker.read_fd)
    os.close(waker.write_fd)


def _seconds_until_given_up(waker: Waker, wait: Callable[[], object]) -> float:
    """Run ``wait`` in a thread, give up 0.2 s in, and return how long ``wait`` took to raise."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            wait()
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    waker.give_up()
    thread.join(10)
    assert not thread.is_alive(), "the wait was not cut short"
    assert len(errors) == 1 and isinstance(errors[0], DaemonUnavailable), errors
    assert "Gave up waiting" in str(errors[0])
    return time.monotonic() - started


def test_a_handshake_nobody_answers_stops_when_the_sender_gives_up(silent_daemon: Path, waker: Waker) -> None:
    # This used to wait for the whole connect timeout (10 s by default) in a blocking recv.
    hello = make_hello("client", "/store")
    took = _seconds_until_given_up(waker, lambda: handshake(silent_daemon, hello, timeout=30, interrupt=waker.interrupt))
    assert took < 5


def test_a_send_nobody_reads_stops_when_the_sender_gives_up(silent_daemon: Path, waker: Waker) -> None:
    # This used to block in sendall for as long as the daemon stayed stopped.
    transport = Transport(silent_daemon, timeout=1.0, interrupt=waker.interrupt)
    try:
        took = _seconds_until_given_up(waker, lambda: transport.send(b"x" * (16 * 1024 * 1024)))
    finally:
        transport.close()
    assert took < 5


def test_a_poke_without_giving_up_leaves_the_wait_to_its_timeout(silent_daemon: Path, waker: Waker) -> None:
    transport = Transport(silent_daemon, timeout=1.0, interrupt=waker.interrupt)
    try:
        waker.poke()
        started = time.monotonic()
        assert transport.receive(0.3) is None
        assert time.monotonic() - started >= 0.3
        # The wait emptied the pipe of a poke meant for the sender's loop, and says so: the loop
        # acts on it at once instead of sleeping its send interval (a process's first flush waited
        # 50 ms for that).
        assert waker.interrupt.poked
    finally:
        transport.close()
