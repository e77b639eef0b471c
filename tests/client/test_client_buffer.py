"""``trackd.Client``'s buffer under load: back-pressure without a false alarm, every drop counted, the
ack window kept, and each key's points in order whichever threads log them."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess
from mlflow.tracking import MlflowClient

from trackd import Client, ClientConfig


def test_a_burst_faster_than_the_daemon_pauses_without_a_warning(
    store: Path, daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every benchmark-like loop printed "the event buffer is full ... not keeping up" on a healthy
    # machine: the block policy's millisecond pauses are back-pressure, not trouble.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, max_buffered=100)
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        for step in range(20_000):
            client.log_metric(run_id, "loss", 0.5, step=step)
        client.flush(timeout=30)
        blocked_s = client.stats()["blocked_s"]
        assert len(client.get_metric_history(run_id, "loss")) == 20_000
    assert isinstance(blocked_s, float) and blocked_s > 0  # the buffer did fill
    warned = "buffer is full" in capsys.readouterr().err
    assert blocked_s >= 1.0 or not warned, blocked_s  # only waits of a second in all (a slow machine) are said


def test_a_call_waiting_for_room_wakes_the_sender_thread(store: Path, socket_path: Path) -> None:
    # A call that found the buffer full waited without waking the sender, which then slept out
    # its send interval (or the next ack): with TRACKD_MAX_BUFFERED=100 a loop ran at ~19,000
    # points/s beside a daemon writing 500,000, warned "the daemon is not keeping up". Here nothing
    # else wakes the thread (an hour's send interval, a daemon that acks only 4,096 events or a
    # flush), so without the poke the loop never ends.
    daemon = DaemonProcess(socket_path, "--max-age", "3600").start()
    config = ClientConfig(socket_path=socket_path, autostart=False, max_buffered=10, flush_interval=3600.0)
    try:
        with Client(store, config=config) as client:
            run_id = client.create_run("0").info.run_id
            loop = threading.Thread(target=lambda: [client.log_metric(run_id, "x", 1.0, step=s) for s in range(1_000)])
            loop.start()
            loop.join(60)
            assert not loop.is_alive(), "a logging call waits for room the sender thread was never asked to make"
            client.flush(timeout=30)
            assert len(client.get_metric_history(run_id, "x")) == 1_000
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_drop_policy_counts_every_dropped_point_of_log_metrics(store: Path, daemon: DaemonProcess) -> None:
    # log_metrics appends several records at once; the drop policy used to drop one of them.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, max_buffered=50, on_full="drop")
    daemon.signal(signal.SIGSTOP)
    try:
        with Client(store, config=config) as client:
            run = client.create_run("0")
            for step in range(200):
                client.log_metrics(run.info.run_id, {f"k{i}": float(step) for i in range(10)}, step=step)
            assert len(client._sender.buffer) < 50
            daemon.signal(signal.SIGCONT)
            report = client.flush(timeout=30)
            written = sum(len(client.get_metric_history(run.info.run_id, f"k{i}")) for i in range(10))
            assert written + report.dropped == 2000
    finally:
        daemon.signal(signal.SIGCONT)


def test_unacknowledged_events_stop_at_the_window_while_the_daemon_is_stopped(store: Path, daemon: DaemonProcess) -> None:
    # The window bounds what waits for its ack in events too: plain records (~70 bytes each) used
    # to fill a byte window only, and series points (~20) held far more than a write's worth.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, max_unacked_events=500)
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        client.flush(timeout=30)
        daemon.signal(signal.SIGSTOP)
        try:
            for step in range(500):
                client.log_metric(run_id, "loss", float(step), step=step)
            deadline = time.monotonic() + 10
            while client.stats()["unacked_events"] != 500 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.stats()["buffered"] == 0
            for step in range(500, 2000):
                client.log_metric(run_id, "loss", float(step), step=step)
            time.sleep(0.3)  # the sender wakes every 50 ms: it had its chances to send more
            stats = client.stats()
            assert (stats["unacked_events"], stats["buffered"]) == (500, 1500)
        finally:
            daemon.signal(signal.SIGCONT)
        client.flush(timeout=30)
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(2000))
        assert client.stats()["unacked_events"] == 0


def test_threads_logging_their_own_keys_in_turn_keep_every_point_of_each_key_in_order(
    store: Path, client: Client
) -> None:
    # Each thread's cycle is broken wherever another thread gets the GIL; MLflow must read each
    # key's points in the order they were logged.
    run_id = client.create_run("0").info.run_id
    steps_of = {"t0": 3000, "t1": 2000, "t2": 1000}

    def log(name: str) -> None:
        for step in range(steps_of[name]):
            client.log_metric(run_id, f"{name}/k{step % 3}", float(step), step=step)
            if step % 97 == 0:
                time.sleep(0)  # let the other threads in, mid-cycle

    threads = [threading.Thread(target=log, args=(name,)) for name in steps_of]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.flush(timeout=30)
    reader = MlflowClient(tracking_uri=str(store))
    for name, steps in steps_of.items():
        for k in range(3):
            history = reader.get_metric_history(run_id, f"{name}/k{k}")
            assert [m.step for m in history] == list(range(k, steps, 3))
            assert [m.value for m in history] == [float(s) for s in range(k, steps, 3)]


def test_keys_in_random_order_reach_the_store_per_key_in_order(store: Path, client: Client) -> None:
    # No cycle at all: the sender groups each chunk's points per key (metric_series' _grouped);
    # the daemon writes them, and MLflow reads each key's points in the order they were logged.
    run_id = client.create_run("0").info.run_id
    client.flush(timeout=30)  # the run's creation in a chunk of its own: points alone are grouped
    rng = random.Random(5)
    logged: dict[str, list[int]] = {}
    for step in range(5000):
        key = f"k{rng.randrange(50)}"
        logged.setdefault(key, []).append(step)
        client.log_metric(run_id, key, step / 7, step=step)
    client.flush(timeout=30)
    reader = MlflowClient(tracking_uri=str(store))
    for key, steps in logged.items():
        history = reader.get_metric_history(run_id, key)
        assert [m.step for m in history] == steps
        assert [m.value for m in history] == [s / 7 for s in steps]


def test_pending_counts_while_another_thread_logs(client: Client) -> None:
    # This used to raise "deque mutated during iteration" (and, in the sender thread, kill it).
    run = client.create_run("0")
    errors: list[BaseException] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            try:
                assert client.pending() >= 0
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return

    counter = threading.Thread(target=count)
    counter.start()
    try:
        for step in range(200_000):
            client.log_metric(run.info.run_id, "loss", 0.5, step=step)
    finally:
        done.set()
        counter.join(timeout=30)
    assert errors == []
    client.flush(timeout=60)
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 200_000


def test_run_records_pass_a_full_buffer_only_within_a_slack(store: Path, daemon: DaemonProcess) -> None:
    # A run's creation and end pass the on-full policy (SIGTERM's end_run used to wait for room
    # for ever), but only up to RUN_RECORD_SLACK past the bound: a loop of create_run and
    # set_terminated at a stalled daemon grew the buffer without bound, and every drop popped it all.
    from trackd.client._on_full import RUN_RECORD_SLACK

    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, max_buffered=100, on_full="drop")
    with Client(store, config=config) as client:
        client.flush()
        daemon.signal(signal.SIGSTOP)
        try:
            for _ in range(2000):
                run_id = client.create_run().info.run_id
                client.log_metric(run_id, "loss", 1.0)
                client.set_terminated(run_id)
                assert int(str(client.stats()["buffered"])) <= 100 + RUN_RECORD_SLACK + 1
            assert int(str(client.stats()["dropped"])) > 0
        finally:
            daemon.signal(signal.SIGCONT)
