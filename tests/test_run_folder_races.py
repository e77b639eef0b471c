"""A run's folders changed by hand in the middle of a daemon's write: a metric folder swapped for a
link between its check and its open, and a run folder removed between two of its items.

As in test_key_folders_races.py, the daemon runs under strace, which stops it (SIGSTOP) at the one
syscall named; the test changes the store in that moment and lets the daemon go on (SIGCONT).
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest
from helpers import TracedDaemon, made_run, store_client, swapped_for_link, wait_for

from trackd import DeliveryError

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="needs the syscalls named to be x86_64's"),
]

T0 = 1_700_000_000_000


@pytest.mark.parametrize("key", ["new", "existing"])
def test_a_metric_folder_swapped_between_its_check_and_its_open_is_refused(
    socket_path: Path, tmp_path: Path, key: str
) -> None:
    # The writer confined metrics/ by path, then opened it by path to hold it: an experiment
    # folder replaced by a link in between had the daemon hold a folder outside the store, and
    # write the metric files it opened later by name in it.
    store = tmp_path / "mlruns"
    run_id = made_run(store, socket_path)
    metrics = store / "0" / run_id / "metrics"
    if key == "existing":
        (metrics / "m").write_text(f"{T0} 0.25 0\n")
    outside = tmp_path / "outside" / "0"
    (outside / run_id / "metrics").mkdir(parents=True)
    daemon = TracedDaemon.stopping_at_open(socket_path, tmp_path / "trace", metrics)
    client = store_client(store, socket_path)
    try:
        client.log_metric(run_id, "m", 0.5, T0, 1)
        wait_for(daemon.stopped, timeout=30, message="the daemon stopped at the metric folder's open")
        with swapped_for_link(store / "0", outside):
            daemon.resume()
            with pytest.raises(DeliveryError) as caught:
                client.flush(timeout=30)
        assert "Refusing to write into" in caught.value.failures[0], caught.value.failures
        assert f"metric 'm' of run {run_id}" in caught.value.failures[0]
        client.log_metric(run_id, "m", 0.75, T0, 2)
        client.log_metric(run_id, "other", 1.0, T0, 0)
        client.flush(timeout=30)
        assert list((outside / run_id / "metrics").iterdir()) == []
        history = MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "m")
        assert [(m.step, m.value) for m in history] == [(0, 0.25)] * (key == "existing") + [(2, 0.75)]
    finally:
        client.close(timeout=10)
        daemon.stop()


def test_items_of_a_run_whose_folder_is_removed_during_the_write_say_so(socket_path: Path, tmp_path: Path) -> None:
    # They said "No such file or directory ('.../<run>/.trackd-....tmp')": the temp file each
    # item's value went to first, not that its run was gone, as "Run '<id>' not found" says
    # between writes.
    store = tmp_path / "mlruns"
    run_id = made_run(store, socket_path)
    run_folder = store / "0" / run_id
    # Stopped after the first param's rename (the signal arrives as the call returns): that param
    # is written, the others not begun.
    daemon = TracedDaemon(
        socket_path, tmp_path / "trace", "-e", "trace=renameat", "-e", "inject=renameat:signal=SIGSTOP:when=1",
    ).start()
    client = store_client(store, socket_path)
    try:
        for key in ("p1", "p2", "p3"):
            client.log_param(run_id, key, "1")
        client.set_tag(run_id, "t", "x")
        client.log_metric(run_id, "m", 0.5, T0, 0)
        wait_for(daemon.stopped, timeout=30, message="the daemon stopped at the second param's rename")
        shutil.rmtree(run_folder)
        daemon.resume()
        with pytest.raises(DeliveryError) as caught:
            client.flush(timeout=30)
        failures = caught.value.failures
        assert len(failures) == 4, failures
        for failure, item in zip(failures, ["param 'p2'", "param 'p3'", "tag 't'", "metric 'm'"]):
            assert f"Cannot write {item} of run {run_id}: run '{run_id}' not found in the store" in failure, failure
            assert f"its folder {str(run_folder)!r} was removed during the write" in failure, failure
            assert ".trackd-" not in failure
        assert not run_folder.exists()  # nothing made again where the run was
    finally:
        client.close(timeout=10)
        daemon.stop()
