"""A write of many nested params, tags and metric keys fits in a low file limit.

A write held a descriptor of every folder it wrote a param or tag into (run folders, their
params/ and tags/, and each nested key's folder, g7/ for g7/lr) until it ended, uncapped and outside
--max-open-files: a write of ~1,500 nested keys under the file limit failed with EMFILE, which the
writer takes for a store outage, so the same batch was refused on every retry and the store
blocked until the daemon restarted. Here real daemons run under a file limit of 256 and real MLflow
reads back every key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess

from trackd import Client, ClientConfig

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

pytestmark = pytest.mark.timeout(120)

FILE_LIMIT = 256
T0 = 1_700_000_000_000


def _client(store: Path, socket_path: Path) -> Client:
    return Client(str(store), config=ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=5.0))


def _log_nested(client: Client, run_id: str, keys: range) -> None:
    """One log_batch (one batch on the wire, never split) of a nested param, tag and metric per key."""
    client.log_batch(
        run_id,
        metrics=[Metric(f"g{i}/loss", 0.5, T0, i) for i in keys],
        params=[Param(f"g{i}/lr", str(i)) for i in keys],
        tags=[RunTag(f"g{i}/note", f"n{i}") for i in keys],
    )


def _assert_read_back(store: Path, run_id: str, keys: range) -> None:
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert {k: v for k, v in run.data.params.items()} == {f"g{i}/lr": str(i) for i in keys}
    assert {k: run.data.tags[k] for k in run.data.tags if k.startswith("g")} == {f"g{i}/note": f"n{i}" for i in keys}
    assert run.data.metrics == {f"g{i}/loss": 0.5 for i in keys}


@pytest.mark.parametrize("max_open_files", [None, "600"])
def test_a_write_of_1500_nested_keys_in_one_run_is_written_under_a_low_file_limit(
    socket_path: Path, tmp_path: Path, max_open_files: str | None
) -> None:
    # "600": a metric-file cap above the file limit, so that the cache can hold every descriptor
    # the key files need when their write begins.
    args = ("--max-connections", "16") + (("--max-open-files", max_open_files) if max_open_files else ())
    daemon = DaemonProcess(socket_path, *args, file_limit=FILE_LIMIT).start()
    store = tmp_path / "mlruns"
    client = _client(store, socket_path)
    keys = range(1500)
    try:
        run_id = client.create_run("0").info.run_id
        client.flush(timeout=30)
        _log_nested(client, run_id, keys)
        client.flush(timeout=60)  # FlushTimeout while the store is refused as out of descriptors
        assert daemon.status()["write_errors"] == 0, daemon.log()
        _assert_read_back(store, run_id, keys)
    finally:
        client.close(timeout=10)
        daemon.stop()


def test_one_write_across_300_runs_is_written_under_a_low_file_limit(socket_path: Path, tmp_path: Path) -> None:
    # Each run held its folder, params/ and tags/ (and a nested key's folder) until the write ended:
    # 300 runs, about 1,200 descriptors.
    daemon = DaemonProcess(socket_path, "--max-connections", "16", "--max-age", "1", file_limit=FILE_LIMIT).start()
    store = tmp_path / "mlruns"
    client = _client(store, socket_path)
    keys = range(2)
    try:
        runs = [client.create_run("0").info.run_id for _ in range(300)]
        client.flush(timeout=60)
        for run_id in runs:
            _log_nested(client, run_id, keys)
        client.flush(timeout=60)  # FlushTimeout while the store is refused as out of descriptors
        assert daemon.status()["write_errors"] == 0, daemon.log()
        for run_id in runs:
            _assert_read_back(store, run_id, keys)
    finally:
        client.close(timeout=10)
        daemon.stop()
