"""``trackd.Client`` behaves like ``mlflow.MlflowClient``: log by run id, flush, read back from ./mlruns."""

from __future__ import annotations

import contextlib
import json
import linecache
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import pytest
from helpers import DaemonProcess, wait_for
from mlflow.tracking import MlflowClient

from trackd import Client, ClientClosedError, ClientConfig, DeliveryError, RunStatus
from trackd.client import ClientState
from trackd.errors import ExperimentExists, InvalidArgument
from trackd.protocol import MAX_INLINE_ARTIFACT_SIZE
from trackd.store import FileInfo, Metric

T0 = 1_700_000_000_000


class KeyValue(NamedTuple):
    """A param or tag for log_batch, as mlflow.entities.Param."""

    key: str
    value: object


@pytest.fixture
def config(daemon: DaemonProcess) -> ClientConfig:
    return ClientConfig(socket_path=daemon.paths.socket, autostart=False)


@pytest.fixture
def client(store: Path, config: ClientConfig) -> Iterator[Client]:
    with Client(store, config=config) as client:
        yield client


def _artifact_root(store: Path, run_id: str) -> Path:
    return next(store.glob(f"*/{run_id}")) / "artifacts"


# -- experiments ----------------------------------------------------------------------------------


def test_create_experiment_is_found_by_name(client: Client) -> None:
    experiment_id = client.create_experiment("exp-a", tags={"team": "ml"})
    experiment = client.get_experiment_by_name("exp-a")
    assert experiment is not None and experiment.experiment_id == experiment_id
    assert experiment.name == "exp-a" and experiment.tags == {"team": "ml"}
    assert client.get_experiment(experiment_id).name == "exp-a"
    assert client.get_experiment_by_name("missing") is None


def test_create_experiment_with_a_taken_name_raises_experiment_exists(client: Client) -> None:
    # This used to raise DeliveryError: the daemon's reply carries only a message.
    client.create_experiment("exp-a")
    with pytest.raises(ExperimentExists, match="Experiment 'exp-a' already exists"):
        client.create_experiment("exp-a")
    assert [e.name for e in client.search_experiments()].count("exp-a") == 1


# -- runs -----------------------------------------------------------------------------------------


def test_create_run_stores_tags_run_name_and_running_status(client: Client) -> None:
    experiment_id = client.create_experiment("exp")
    created = client.create_run(experiment_id, start_time=T0, tags={"team": "ml", "n": 3}, run_name="first")
    run = client.get_run(created.info.run_id)
    assert run.info == created.info
    assert (run.info.experiment_id, run.info.run_name, run.info.status, run.info.start_time) == (experiment_id, "first", "RUNNING", T0)
    assert run.data.tags == {"team": "ml", "n": "3", "mlflow.runName": "first"}


def test_create_run_without_a_name_gets_a_generated_one(client: Client) -> None:
    run = client.get_run(client.create_run().info.run_id)
    assert run.info.experiment_id == "0"
    assert run.info.run_name and run.data.tags["mlflow.runName"] == run.info.run_name


def test_create_run_with_an_explicit_id_uses_it(client: Client) -> None:
    client.create_run(run_id="my-run-1")
    assert client.get_run("my-run-1").info.run_id == "my-run-1"


def test_create_run_twice_with_one_id_creates_it_once(store: Path, config: ClientConfig, client: Client) -> None:
    # Every rank of a distributed job may create the shared run, in any order.
    with Client(store, config=config) as other_rank:
        client.create_run(run_id="shared", run_name="rank0", start_time=T0)
        client.flush()
        other_rank.create_run(run_id="shared", run_name="rank1", start_time=T0 + 5)
        other_rank.log_metric("shared", "loss", 1.0)
        other_rank.flush()
    client.create_run(run_id="shared", run_name="rank0-again", start_time=T0 + 9)
    [run] = client.search_runs("0")
    assert (run.info.run_id, run.info.run_name, run.info.start_time) == ("shared", "rank0", T0)
    assert run.data.metrics == {"loss": 1.0}


def test_logged_metrics_params_and_tags_are_read_back(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "loss", 0.5, timestamp=T0, step=1)
    client.log_metric(run_id, "loss", 0.25, timestamp=T0 + 1, step=2)
    assert client.log_param(run_id, "lr", 0.01) == 0.01
    client.set_tag(run_id, "team", "ml")
    client.set_tag(run_id, "gone", "soon")
    client.delete_tag(run_id, "gone")
    run = client.get_run(run_id)
    assert run.data.metrics == {"loss": 0.25}
    assert run.data.params == {"lr": "0.01"}
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == {"team": "ml"}


def test_a_training_loop_with_an_eval_metric_now_and_then_keeps_every_file_in_order(client: Client) -> None:
    # Cycles of train keys travel as series, the eval points between them as records (metric_series).
    run_id = client.create_run().info.run_id
    for step in range(3000):
        client.log_metrics(run_id, {"loss": step * 0.5, "acc": 1.0 / (step + 1), "lr": 3e-05}, step=step)
        if step % 97 == 96:
            client.log_metric(run_id, "eval/loss", float(step), step=step)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(3000))
    assert [m.value for m in client.get_metric_history(run_id, "lr")] == [3e-05] * 3000
    assert [m.step for m in client.get_metric_history(run_id, "eval/loss")] == list(range(96, 3000, 97))


def test_metric_history_keeps_values_steps_and_timestamps_in_order(client: Client) -> None:
    run_id = client.create_run().info.run_id
    points = [(0.5, T0, 0), (math.inf, T0 + 1, -3), (1e20, T0 + 2, 2**40), (-1.5, T0 + 3, 1)]
    for value, timestamp, step in points:
        client.log_metric(run_id, "a/b", value, timestamp=timestamp, step=step)
    history = client.get_metric_history(run_id, "a/b")
    assert [(m.key, m.value, m.timestamp, m.step) for m in history] == [("a/b", *p) for p in points]
    assert client.get_metric_history(run_id, "never") == []


def test_metric_without_step_is_logged_at_step_zero(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "loss", 1.0)
    [point] = client.get_metric_history(run_id, "loss")
    assert point.step == 0 and point.timestamp > T0


def test_log_batch_writes_metrics_params_and_tags(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("m", 1.0, T0, 0), Metric("m", 2.0, T0 + 1, 1)],
        params=[KeyValue("p", 1), KeyValue("q", "x")],
        tags=[KeyValue("t", "v")],
    )
    run = client.get_run(run_id)
    assert run.data.metrics == {"m": 2.0}
    assert run.data.params == {"p": "1", "q": "x"}
    assert run.data.tags["t"] == "v"
    assert [m.value for m in client.get_metric_history(run_id, "m")] == [1.0, 2.0]


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED", RunStatus.FAILED, 4])
def test_set_terminated_stores_status_and_end_time(client: Client, status: str | int) -> None:
    run_id = client.create_run(start_time=T0).info.run_id
    client.set_terminated(run_id, status, end_time=T0 + 100)
    info = client.get_run(run_id).info
    # MLflow's RunInfo.status is the name, whichever form set_terminated was given.
    expected = RunStatus(status).name if isinstance(status, int) else status
    assert (info.status, info.end_time) == (expected, T0 + 100)


def test_search_runs_returns_newest_first(client: Client) -> None:
    experiment_id = client.create_experiment("exp")
    ids = [client.create_run(experiment_id, start_time=T0 + i).info.run_id for i in range(3)]
    client.create_run(start_time=T0 + 10)  # in experiment 0
    assert [r.info.run_id for r in client.search_runs(experiment_id)] == ids[::-1]
    assert len(client.search_runs([experiment_id, "0"])) == 4


# -- artifacts ------------------------------------------------------------------------------------


def test_log_text_and_log_dict_write_exact_bytes(client: Client, store: Path) -> None:
    run_id = client.create_run().info.run_id
    data = {"lr": 0.1, "layers": [1, 2], "name": "héllo"}
    client.log_text(run_id, "héllo\n", "notes/readme.txt")
    client.log_dict(run_id, data, "config.json")
    client.log_dict(run_id, data, "config.yaml")
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.json", "config.yaml", "notes"]
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/readme.txt"]
    root = _artifact_root(store, run_id)
    assert (root / "notes" / "readme.txt").read_bytes() == "héllo\n".encode()
    assert (root / "config.json").read_bytes() == json.dumps(data, indent=2).encode()
    import yaml

    assert yaml.safe_load((root / "config.yaml").read_text()) == data


def test_log_artifact_reads_small_files_at_the_call(client: Client, store: Path, tmp_path: Path) -> None:
    # A file up to 8 MiB travels with the event: deleting it right after the call loses nothing.
    run_id = client.create_run().info.run_id
    source = tmp_path / "weights.bin"
    content = os.urandom(MAX_INLINE_ARTIFACT_SIZE)
    source.write_bytes(content)
    client.log_artifact(run_id, source, artifact_path="models")
    source.unlink()
    assert client.list_artifacts(run_id, "models") == [FileInfo("models/weights.bin", False, MAX_INLINE_ARTIFACT_SIZE)]
    assert (_artifact_root(store, run_id) / "models" / "weights.bin").read_bytes() == content


def test_log_artifact_sends_a_file_over_8_mib_by_path(client: Client, store: Path, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    source = tmp_path / "big.bin"
    content = os.urandom(MAX_INLINE_ARTIFACT_SIZE + 1)
    source.write_bytes(content)
    client.log_artifact(run_id, source)
    client.flush()
    assert (_artifact_root(store, run_id) / "big.bin").read_bytes() == content
    assert source.read_bytes() == content  # copied, not moved


def test_log_artifacts_and_a_directory_keep_the_tree(client: Client, store: Path, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    tree = tmp_path / "plots"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    client.log_artifacts(run_id, tree, artifact_path="out")
    client.log_artifact(run_id, tree)
    assert [(a.path, a.is_dir) for a in client.list_artifacts(run_id)] == [("out", True), ("plots", True)]
    root = _artifact_root(store, run_id)
    for prefix in ("out", "plots"):
        assert (root / prefix / "a.txt").read_text() == "a"
        assert (root / prefix / "sub" / "b.txt").read_text() == "b"


@pytest.mark.parametrize("call", ["log_artifacts", "log_artifact"])
def test_a_directory_with_one_unloggable_name_logs_none_of_its_files(
    client: Client, store: Path, tmp_path: Path, call: str
) -> None:
    # The files before the bad one were already buffered when it raised: half a directory landed.
    run_id = client.create_run().info.run_id
    tree = tmp_path / "out"
    deep = tree.joinpath(*["d" * 250] * 5)  # its name in the run has more than 1024 characters
    deep.mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (deep / "z.txt").write_text("z")
    with pytest.raises(InvalidArgument, match="at most 1024"):
        getattr(client, call)(run_id, tree)
    client.flush()
    assert client.list_artifacts(run_id) == []


def test_an_absolute_artifact_path_is_refused_as_log_text_refuses_it(client: Client, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    source = tmp_path / "a.txt"
    source.write_text("a")
    with pytest.raises(InvalidArgument, match="no leading '/'"):
        client.log_artifact(run_id, source, artifact_path="/etc")
    client.log_artifact(run_id, source, artifact_path="plots/")  # a trailing slash is fine
    assert [f.path for f in client.list_artifacts(run_id)] == ["plots"]


# -- delivery -------------------------------------------------------------------------------------


def test_flush_names_a_param_another_process_changed(store: Path, config: ClientConfig, client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.flush()
    with Client(store, config=config) as other_process:
        other_process.log_param(run_id, "lr", "0.2")  # this client never saw lr, so it cannot tell
        with pytest.raises(DeliveryError) as caught:
            other_process.flush()
    assert "'lr'" in str(caught.value) and "Changing param values is not allowed" in str(caught.value)
    assert len(caught.value.failures) == 1 and run_id in caught.value.failures[0]
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_flush_names_a_deleted_tag_that_did_not_exist(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.delete_tag(run_id, "never-set")
    with pytest.raises(DeliveryError, match="never-set"):
        client.flush()
    client.flush()  # a failure is reported once


def test_points_refused_for_a_deleted_run_are_counted_each(client: Client, store: Path, daemon: DaemonProcess) -> None:
    # They were counted once per metric file: 2,000 points, a param and a tag were "3 logged items".
    run_id = client.create_run(run_name="deleted").info.run_id
    client.log_metric(run_id, "warmup", 0.0)
    client.flush()
    run_folder = next(store.glob(f"*/{run_id}"))
    shutil.rmtree(run_folder)  # by hand, as if to free space, while the process still logs
    for step in range(2000):
        client.log_metric(run_id, "loss", float(step), step=step)
    client.log_param(run_id, "lr", "0.1")
    client.set_tag(run_id, "phase", "train")
    with pytest.raises(DeliveryError) as caught:
        client.flush()
    assert str(caught.value).startswith("3 logged item(s), 2002 events, will not be written: "), caught.value
    assert any("metric 'loss'" in failure and "(2000 points)" in failure for failure in caught.value.failures)
    status = daemon.status()
    assert (status["items_rejected"], status["events_rejected"]) == (3, 2002)
    assert client.stats()["rejected"] == 2002


def test_a_metric_file_deleted_by_hand_mid_run_is_made_again(client: Client, store: Path, daemon: DaemonProcess) -> None:
    run_id = client.create_run().info.run_id
    for step in range(10):
        client.log_metric(run_id, "loss", float(step), step=step)
    client.flush()
    metric_file = next(store.glob(f"*/{run_id}/metrics/loss"))
    metric_file.unlink()  # the daemon holds it open
    for step in range(10, 15):
        client.log_metric(run_id, "loss", float(step), step=step)
    client.flush()
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [10, 11, 12, 13, 14]
    assert "was deleted while the daemon had it open" in daemon.log()


def test_the_daemon_holds_no_file_of_an_ended_run_that_was_deleted(client: Client, store: Path, daemon: DaemonProcess) -> None:
    run_id = client.create_run().info.run_id
    for step in range(10):
        client.log_metrics(run_id, {"a": 1.0, "b": 2.0}, step=step)
    client.set_terminated(run_id)
    client.flush()
    shutil.rmtree(next(store.glob(f"*/{run_id}")))
    held = []
    for fd in os.listdir(f"/proc/{daemon.pid}/fd"):
        try:
            held.append(os.readlink(f"/proc/{daemon.pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    assert [path for path in held if run_id in path] == []  # their space is free at once


def test_flush_reports_nothing_pending_after_delivery(client: Client) -> None:
    run_id = client.create_run().info.run_id
    for step in range(100):
        client.log_metric(run_id, "loss", float(step), step=step)
    report = client.flush(timeout=10.0)
    assert (report.pending, report.dropped) == (0, 0)
    assert client.pending() == 0


# -- lifecycle ------------------------------------------------------------------------------------


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


def test_too_many_creation_tags_raise_at_the_call_site_and_later_logging_still_arrives(client: Client) -> None:
    # This used to pass the call site; the daemon then refused the whole frame, and the client
    # resent it on every reconnect, so nothing logged after it was ever delivered.
    with pytest.raises(InvalidArgument, match="at most 1000 tags"):
        client.create_run("0", tags={f"t{i}": "v" for i in range(1001)})
    run = client.create_run("0")
    client.log_metric(run.info.run_id, "after", 1.0)
    client.flush(timeout=30)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "after")] == [1.0]


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


def test_arrays_tensors_decimals_and_bools_are_logged_as_mlflow_logs_them(client: Client) -> None:
    # Training code passes `loss` (a 0-d tensor or array), not loss.item(); MLflow's client logs
    # its value, and trackd refused it as "not a real number". A bool is 1.0 or 0.0 in MLflow's
    # client, and transformers' MLflowCallback passes bools on: refusing one raised in the middle
    # of a log_metrics, so the whole step's metrics were lost.
    np = pytest.importorskip("numpy")
    import decimal

    run_id = client.create_run().info.run_id
    values = [np.array(0.5), np.float32(0.25), np.int64(3), np.array([2.0]), decimal.Decimal("1.5"), True, np.bool_(False)]
    for step, value in enumerate(values):
        client.log_metric(run_id, "loss", value, step=step)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5, 0.25, 3.0, 2.0, 1.5, 1.0, 0.0]
    with pytest.raises(InvalidArgument, match=r"metric 'loss': expected a real number, or an array or tensor holding one, got ndarray of shape \(2,\)"):
        client.log_metric(run_id, "loss", np.array([1.0, 2.0]))


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



def test_a_file_that_grows_past_the_inline_limit_after_it_was_sized_goes_by_path(tmp_path: Path) -> None:
    # log_artifacts sizes a folder's files first and reads them as their records are buffered: a
    # log a training thread appends to grew past 8 MiB in between, went inline, and the daemon
    # refused the whole batch as malformed, which the client resent for ever (second review).
    from trackd.client._artifacts import tree_records
    from trackd.protocol import MAX_INLINE_ARTIFACT_SIZE, check_record

    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "train.log"
    log.write_bytes(b"x" * 1024)
    records = tree_records("0123456789abcdef0123456789abcdef", folder, None)  # sized here
    with open(log, "ab") as grow:
        grow.write(b"y" * MAX_INLINE_ARTIFACT_SIZE)
    (record,) = list(records)  # read here
    check_record(record)
    assert record[3] is None and record[4] == str(log)
    assert record[5] == (log.stat().st_size, log.stat().st_mtime_ns)


def test_a_file_that_grew_by_gigabytes_after_it_was_sized_is_not_read_whole(tmp_path: Path) -> None:
    # Reading it whole (read_bytes) to find it had grown past the inline limit took its size in
    # memory: a log appended to by gigabytes, here a sparse 4 GiB, in a process allowed 1 GiB more.
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "train.log").write_bytes(b"x" * 1024)
    code = f"""
import os, resource, sys
from trackd.client._artifacts import tree_records
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
records = tree_records("0123456789abcdef0123456789abcdef", {str(folder)!r}, None)
os.truncate({str(folder / "train.log")!r}, 4 * 1024 ** 3)
resource.setrlimit(resource.RLIMIT_AS, (size + 1024 ** 3, resource.RLIM_INFINITY))
(record,) = list(records)
print(record[3] is None, record[4], record[5][0])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(folder / "train.log"), str(4 * 1024 ** 3)]


def test_a_folder_with_a_path_too_long_to_copy_by_path_logs_none_of_it(client: Client, store: Path, tmp_path: Path) -> None:
    # Any file may go by path (one that grows past the inline limit after it is sized), and a path
    # too long for that was found only then, raising partway through log_artifacts: the files
    # before it were logged, against "a bad name in a directory logs none of it".
    folder = tmp_path / "outputs"
    # A relative name of 1,009 characters (allowed: at most 1024), so a source path past 1024.
    deep = folder.joinpath(*["d" * 250] * 4)
    deep.mkdir(parents=True)
    assert len(str(deep.relative_to(folder) / "b.log")) == 1009 and len(str((deep / "b.log").absolute())) > 1024
    (folder / "a.txt").write_text("first")
    (deep / "b.log").write_text("small, for now")
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match=r"has a path of \d+ characters; at most 1024 are allowed"):
        client.log_artifacts(run_id, str(folder))
    client.flush()
    assert client.list_artifacts(run_id) == []


@pytest.mark.timeout(60)
def test_a_batch_the_daemon_cannot_decode_is_refused_whole_once_not_resent_for_ever(client: Client, store: Path) -> None:
    # The daemon closes a connection that sent a malformed batch, saying bad_frame but not which
    # batch; the client sent it again on the next connection without end, so flush() never
    # returned (a large artifact dated before 1970 did it, its stamp then refused as malformed).
    # Such a batch comes only from a record the call sites failed to check: one is made here.
    from trackd.protocol import RecordKind

    run_id = client.create_run().info.run_id
    client.flush()
    client._sender.submit((RecordKind.ARTIFACT.value, run_id, "w.bin", None, "/tmp/w.bin", (1, "not an int")))
    with pytest.raises(DeliveryError) as caught:
        client.flush(timeout=30)
    (failure,) = caught.value.failures
    assert "was refused whole by the daemon as malformed" in failure and "source_stamp" in failure
    client.log_metric(run_id, "loss", 0.5)
    client.flush(timeout=30)  # the connection goes on; what follows is written
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5]


@pytest.mark.timeout(90)
def test_a_batch_the_daemon_cannot_decode_is_refused_though_a_megabyte_follows_it(daemon: DaemonProcess, store: Path) -> None:
    # The daemon closed the connection while the client was still sending the batches after the
    # malformed one: the send broke (EPIPE) before the bad_frame reply was read, so the batch went
    # to the spool with every event behind it, the spool could not be read back, and all were lost.
    from trackd.protocol import RecordKind

    # One send interval a minute and fewer records than wake the sender early: the flush sends
    # them all at once, about 1 MB a batch, more than the socket holds while the daemon decodes.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, flush_interval=60.0)
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.flush()
        client._sender.submit((RecordKind.ARTIFACT.value, run_id, "w.bin", None, "/tmp/w.bin", (1, "not an int")))
        for i in range(6000):
            client.set_tag(run_id, f"t{i}", "x" * 600)
        with pytest.raises(DeliveryError) as caught:
            client.flush(timeout=20)
        (failure,) = caught.value.failures
        assert "was refused whole by the daemon as malformed" in failure
        # Refused whole: the tags batched with the malformed record (if any), and only those.
        refused = int(failure.split(" events)")[0].rsplit("(", 1)[1])
        tags = [key for key in client.get_run(run_id).data.tags if key.startswith("t")]
        assert len(tags) == 6000 - (refused - 1)


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
    check, clear = "if self._thread is not None or self.buffer", "self._wake_r = self._wake_w = -1"
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
