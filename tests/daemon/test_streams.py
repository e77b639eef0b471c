"""The daemon's client streams: a reader that shutdown ended takes nothing more, and says nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from trackd.daemon._streams import start_unix_server

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _send_until_closed(path: Path, stop: threading.Event) -> None:
    """A client that keeps sending until the daemon side closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        chunk = b"x" * 65536
        while not stop.is_set():
            try:
                sock.sendall(chunk)
            except OSError:
                return


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_reader_ended_at_shutdown_takes_no_more_data_even_when_draining_resumes_the_socket(
    tmp_path: Path, loop_name: str
) -> None:
    # Shutdown ends a live client's reader (ClientConnection.stop_reading: pause_reading, then
    # feed_eof) and its connection handles what the reader holds. Draining a reader that its flow
    # control had paused (more than its limit buffered) resumes the socket, and the client's next
    # bytes were fed after the end: "Fatal error on transport ... AssertionError: feed_data after
    # feed_eof" and a traceback in the daemon's log, in a chaos round's graceful restart.
    path = tmp_path / "s.sock"
    errors: list[dict[str, Any]] = []
    drained: list[int] = []
    stop = threading.Event()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        handled = asyncio.Event()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await asyncio.sleep(0.3)  # the client fills the reader past its limit: it pauses the socket
                transport = cast(asyncio.Transport, writer.transport)  # uvloop's is no asyncio.Transport subclass
                transport.pause_reading()  # as stop_reading does
                reader.feed_eof()
                total = 0
                while data := await reader.read(4096):
                    total += len(data)
                    await asyncio.sleep(0)  # the loop runs between reads, as the connection's writes let it
                drained.append(total)
                await asyncio.sleep(0.3)  # the client goes on sending meanwhile
            finally:
                handled.set()
                writer.close()

        server = await start_unix_server(connected, str(path), backlog=8)
        sender = threading.Thread(target=_send_until_closed, args=(path, stop))
        sender.start()
        try:
            await asyncio.wait_for(handled.wait(), 30)
        finally:
            stop.set()
            server.close()
            await asyncio.sleep(0.05)
            await asyncio.to_thread(sender.join, 10)

    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert drained and drained[0] > 0
    assert errors == []
