"""Another writer changing a run's folders between the daemon's check and its next step.

The daemon runs under strace, which makes the moment deterministic: at the one syscall named, it
answers for the kernel (``error=``) and stops the daemon (SIGSTOP); the test changes the store
as another writer would in that moment, and lets the daemon go on (SIGCONT). Python retries a call
that failed with EINTR (PEP 475), so an injected EINTR makes the daemon repeat the call after the
change.
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
    # Elsewhere os.mkdir(path) is a mkdirat() too, which the injection would hit at start.
    pytest.mark.skipif(platform.machine() != "x86_64", reason="needs mkdir() to be a syscall of its own"),
]


@pytest.mark.parametrize("made", ["file", "link"])
def test_a_key_folder_made_meanwhile_as_something_else_fails_only_its_item(
    socket_path: Path, tmp_path: Path, made: str
) -> None:
    # The daemon found params/g1 missing and made it, but another writer made "g1" first: mkdir
    # said EEXIST, and the open after it met a file (or a link). That was an AssertionError,
    # which failed the whole write and every batch pending with it.
    store = tmp_path / "mlruns"
    run_id = made_run(store, socket_path)
    folder = store / "0" / run_id / "params" / "g1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    daemon = TracedDaemon(
        socket_path, tmp_path / "trace", "-e", "trace=mkdirat", "-e", "inject=mkdirat:error=EEXIST:signal=SIGSTOP:when=1"
    ).start()
    client = store_client(store, socket_path)
    try:
        client.log_param(run_id, "plain", "1")
        client.log_param(run_id, "g1/lr", "0.1")
        client.set_tag(run_id, "t", "x")
        client.log_metric(run_id, "m", 0.5, 1000, 0)
        wait_for(daemon.stopped, timeout=30, message="the daemon stopped at its mkdir")
        if made == "file":
            folder.write_text("7")  # another writer's param "g1"
        else:
            folder.symlink_to(elsewhere)
        daemon.resume()
        with pytest.raises(DeliveryError) as caught:
            client.flush(timeout=30)
        assert len(caught.value.failures) == 1, caught.value.failures
        failure = caught.value.failures[0]
        assert f"param 'g1/lr' of run {run_id}" in failure
        if made == "file":  # the store's words for a clash of keys ('a' and 'a/b')
            assert "clashes with an existing key" in failure and str(folder) in failure, failure
        else:  # confinement's words for a link planted in the store
            assert "Refusing to write into" in failure and "symbolic link" in failure, failure
        assert list(elsewhere.iterdir()) == []
        client.log_param(run_id, "after", "2")
        client.flush(timeout=30)  # the store takes writes: not an outage
        run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
        assert run.data.params == {"plain": "1", "after": "2", **({"g1": "7"} if made == "file" else {})}
        assert run.data.tags["t"] == "x" and run.data.metrics == {"m": 0.5}
    finally:
        client.close(timeout=10)
        daemon.stop()


def test_a_run_folder_swapped_between_its_check_and_its_open_is_refused(socket_path: Path, tmp_path: Path) -> None:
    # The run folder was confined by path, then opened by path: an experiment folder replaced by a
    # link in between had params written through it, outside the store.
    store = tmp_path / "mlruns"
    run_id = made_run(store, socket_path)
    run_folder = store / "0" / run_id
    outside = tmp_path / "outside" / "0"
    (outside / run_id / "params").mkdir(parents=True)
    daemon = TracedDaemon.stopping_at_open(socket_path, tmp_path / "trace", run_folder)
    client = store_client(store, socket_path)
    try:
        client.log_param(run_id, "lr", "0.1")
        wait_for(daemon.stopped, timeout=30, message="the daemon stopped at the run folder's open")
        with swapped_for_link(store / "0", outside):
            daemon.resume()
            with pytest.raises(DeliveryError) as caught:
                client.flush(timeout=30)
        assert "Refusing to write into" in caught.value.failures[0], caught.value.failures
        assert list((outside / run_id / "params").iterdir()) == []
        client.log_param(run_id, "after", "2")
        client.flush(timeout=30)
        assert MlflowClient(tracking_uri=str(store)).get_run(run_id).data.params == {"after": "2"}
    finally:
        client.close(timeout=10)
        daemon.stop()
