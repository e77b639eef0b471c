"""``trackd.Client``'s lifecycle: close delivers and is idempotent, a closed client refuses to log, and
the clients of one store share one sender thread that a close by two threads at once leaves sound."""

from __future__ import annotations

import contextlib
import linecache
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import pytest
from helpers import DaemonProcess, wait_for
from mlflow.tracking import MlflowClient

from trackd import Client, ClientClosedError, ClientConfig
from trackd.client import ClientState


def test_close_delivers_and_is_idempotent(store: Path, config: ClientConfig) -> None:
    client = Client(store, config=config)
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "loss", 1.0)
    client.close()
    client.close()
    assert client.state is ClientState.CLOSED
    with Client(store, config=config) as reader:
        assert reader.get_run(run_id).data.metrics == {"loss": 1.0}


def test_closed_client_refuses_logging_and_flush(store: Path, config: ClientConfig) -> None:
    client = Client(store, config=config)
    run_id = client.create_run().info.run_id
    client.close()
    with pytest.raises(ClientClosedError, match="closed"):
        client.log_metric(run_id, "loss", 1.0)
    with pytest.raises(ClientClosedError, match="closed"):
        client.create_run()
    # This used to wait forever: the sender thread is gone and nothing answers the barrier.
    with pytest.raises(ClientClosedError, match="closed"):
        client.flush(timeout=5.0)
    assert client.get_run(run_id).info.run_id == run_id  # reads still work


def test_context_manager_closes_and_delivers(store: Path, config: ClientConfig) -> None:
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.log_param(run_id, "p", "v")
    assert client.state is ClientState.CLOSED
    assert client.get_run(run_id).data.params == {"p": "v"}


def test_clients_of_one_store_share_one_sender_thread(store: Path, config: ClientConfig, client: Client) -> None:
    # MLflow code that makes a client per call must not start a thread and a connection per call.
    run_id = client.create_run().info.run_id
    client.flush()
    threads = threading.active_count()
    for step in range(50):
        Client(store, config=config).log_metric(run_id, "inline", float(step), step=step)
    assert threading.active_count() == threads
    client.flush()  # the shared sender: this flush covers what the inline clients accepted
    history = client.get_metric_history(run_id, "inline")
    assert [(m.step, m.value) for m in history] == [(s, float(s)) for s in range(50)]


def test_closing_one_of_two_clients_of_a_store_leaves_the_other_working(store: Path, config: ClientConfig) -> None:
    first, second = Client(store, config=config), Client(store, config=config)
    run_id = first.create_run().info.run_id
    first.log_metric(run_id, "loss", 1.0)
    first.close()  # delivers what it accepted; the sender stays for the second
    assert second.get_run(run_id).data.metrics == {"loss": 1.0}
    second.log_metric(run_id, "loss", 2.0, step=1)
    second.close()
    with Client(store, config=config) as reader:
        assert [m.value for m in reader.get_metric_history(run_id, "loss")] == [1.0, 2.0]


def test_wait_on_operations_of_a_client_another_thread_is_closing_returns_once_they_are_written(
    daemon: DaemonProcess, store: Path, config: ClientConfig
) -> None:
    # wait() returned at once when the client was closed, also while another thread's close was
    # still delivering: the caller then read the store without the points it had waited for
    # (300,000 points, 20,000 of them missing right after wait()). It now waits for that close.
    client = Client(store, config=config)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    client.flush()
    daemon.signal(signal.SIGSTOP)  # the close below cannot finish before wait() is called
    try:
        operation = client.log_metric(run_id, "loss", 0.5, step=7, synchronous=False)
        assert operation is not None
        closing = threading.Thread(target=client.close, args=(60.0,))
        closing.start()
        wait_for(lambda: client.state is ClientState.CLOSED, 30, 0.001, message="the close to begin")
        resume = threading.Timer(1.0, daemon.signal, (signal.SIGCONT,))
        resume.start()
        operation.wait()
        points = [(m.step, m.value) for m in MlflowClient(str(store)).get_metric_history(run_id, "loss")]
        assert points == [(7, 0.5)], "wait() returned before the closing thread had delivered the point"
        closing.join(60)
        resume.join()
    finally:
        daemon.signal(signal.SIGCONT)


class _Pauses:
    """Pauses the threads that run ``Sender.close`` at chosen source lines, to order two closes.

    A trace function only watches; no part of trackd is replaced. Each thread that calls ``run``
    stops before the first line of ``close`` whose text contains its next pause string, until the
    test lets it go; the lines it reaches are noted.
    """

    def __init__(self) -> None:
        self.reached: dict[str, threading.Event] = {}
        self.go: dict[str, threading.Event] = {}
        self.last_line: dict[str, str] = {}
        self.finished: dict[str, threading.Event] = {}

    def run(self, name: str, close: Callable[[], None], pauses: list[str]) -> threading.Thread:
        pending = list(pauses)
        for pause in pauses:
            self.reached[f"{name}:{pause}"], self.go[f"{name}:{pause}"] = threading.Event(), threading.Event()
        self.finished[name] = threading.Event()

        def local(frame: FrameType, event: str, arg: object) -> object:
            if event == "line":
                text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                self.last_line[name] = text
                if pending and pending[0] in text:
                    key = f"{name}:{pending.pop(0)}"
                    self.reached[key].set()
                    assert self.go[key].wait(30), f"{key} was never let go"
            return local

        def tracer(frame: FrameType, event: str, arg: object) -> object:
            code = frame.f_code
            return local if code.co_name == "close" and code.co_filename.endswith("_sender.py") else None

        def target() -> None:
            sys.settrace(tracer)  # type: ignore[arg-type]
            try:
                close()
            finally:
                sys.settrace(None)
                self.finished[name].set()

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    def release(self, key: str) -> None:
        assert self.reached[key].wait(30), f"{key} was never reached: has Sender.close changed?"
        self.go[key].set()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_sender_closed_by_two_threads_at_once_closes_no_descriptor_another_opened_meanwhile(tmp_path: Path) -> None:
    # At exit atexit also closes a sender that a daemon thread is still closing. Both read the
    # wake pipe's descriptors before either cleared them, so the second os.close closed whatever
    # was opened since under the same number: here a file of the test's own.
    config = ClientConfig(socket_path=tmp_path / "none.sock", autostart=False)
    client = Client(tmp_path / "mlruns", config=config)
    sender = client._sender
    wake_fds = {sender._wake_r, sender._wake_w}
    pauses = _Pauses()
    # Both past the "if self._closed: return" check, then the first between reading the
    # descriptors and clearing them.
    check, clear = "if self._used or self.buffer", "self._wake_r = self._wake_w = -1"
    first = pauses.run("first", sender.close, [check, clear])
    assert pauses.reached[f"first:{check}"].wait(30), "has Sender.close changed?"
    second = pauses.run("second", sender.close, [check])
    pauses.release(f"first:{check}")  # on to the point between reading the descriptors and clearing them
    assert pauses.reached[f"first:{clear}"].wait(30), "has Sender.close changed?"
    pauses.release(f"second:{check}")

    def second_done_or_waiting_for_the_lock() -> bool:
        if pauses.finished["second"].is_set():
            return True
        # The first holds the sender's lock: the second waits for it at its next "with".
        if sender._cond.acquire(blocking=False):
            sender._cond.release()
            return False
        return pauses.last_line.get("second", "").startswith("with self._cond")

    wait_for(second_done_or_waiting_for_the_lock, 30, message="the second close to finish or wait")
    opened: list[int] = []
    try:
        for _ in range(8):  # the numbers the second close freed, if it closed them
            opened.append(os.open(tmp_path / f"mine-{len(opened)}", os.O_CREAT | os.O_WRONLY))
            if wake_fds <= set(opened):
                break
        pauses.go[f"first:{clear}"].set()
        first.join(30)
        second.join(30)
        closed = [fd for fd in opened if not _is_open(fd)]
        assert not closed, f"a close of the sender closed the test's own descriptors {closed}"
    finally:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        client.close()
