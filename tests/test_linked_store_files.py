"""Store files kept as symbolic links are read through them, as MLflow reads them.

A store kept with DVC's symlink cache, git-annex, `cp -rs` or stow has its files (meta.yaml,
metric, param and tag files) as links into a content store. MLflow's FileStore opens them with
open(), which follows the link. trackd read every store file with O_NOFOLLOW and refused a link:
one linked meta.yaml of experiment 0 failed create_experiment, get_experiment_by_name and
set_experiment for every client of the store, and a run whose files were linked could not be read
or ended. Reads follow the final link now; only what it leads to must be a regular file (a link to
a FIFO is still refused, without waiting on it). The writer still never writes through a link: a
meta.yaml it rewrites replaces the link with a file, leaving the link's target as it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import DaemonProcess, store_client
from mlflow.tracking import MlflowClient

from trackd.errors import StoreError
from trackd.store import StoreReader, StoreWriter

pytestmark = pytest.mark.timeout(90)


def _as_link(path: Path, content_store: Path) -> Path:
    """Move ``path`` into ``content_store`` and leave a link to it in its place; the moved file."""
    content_store.mkdir(exist_ok=True)
    target = content_store / f"{path.parent.name}-{path.name}"
    shutil.move(path, target)
    path.symlink_to(target)
    return target


def test_a_linked_meta_yaml_of_experiment_0_no_longer_fails_every_client_of_the_store(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    with store_client(store, daemon.paths.socket) as client:
        client.create_run("0")
        client.flush(timeout=30)
    _as_link(store / "0" / "meta.yaml", tmp_path / "annex")
    with store_client(store, daemon.paths.socket) as client:
        # These used to raise StoreError "Refusing to read '.../0/meta.yaml': it is a symbolic link".
        experiment_id = client.create_experiment("mnist")
        default = client.get_experiment_by_name("Default")
    assert default is not None and default.experiment_id == "0"
    assert {e.name: e.experiment_id for e in MlflowClient(tracking_uri=str(store)).search_experiments()} == {
        "Default": "0", "mnist": experiment_id,
    }


def test_a_run_whose_files_are_links_is_read_and_ended_and_the_link_targets_stay_as_they_were(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    with store_client(store, daemon.paths.socket) as client:
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "loss", 0.5, step=1)
        client.log_param(run_id, "lr", "0.1")
        client.flush(timeout=30)
    run = store / "0" / run_id
    annex = tmp_path / "annex"
    meta_target = _as_link(run / "meta.yaml", annex)
    for path in (run / "metrics" / "loss", run / "params" / "lr"):
        _as_link(path, annex)
    annexed = {path: path.read_bytes() for path in annex.iterdir()}
    reader = StoreReader(store)
    # These used to raise StoreError "... it is a symbolic link, expected a regular file".
    read = reader.get_run(run_id)
    assert (read.data.metrics, read.data.params) == ({"loss": 0.5}, {"lr": "0.1"})
    assert [m.value for m in reader.get_metric_history(run_id, "loss")] == [0.5]
    with store_client(store, daemon.paths.socket) as client:
        client.log_metric(run_id, "acc", 0.9, step=1)
        client.set_terminated(run_id, "FINISHED")
        client.flush(timeout=30)
    # The end rewrote meta.yaml as a file of its own (it never writes through the link).
    assert not (run / "meta.yaml").is_symlink() and meta_target.read_bytes() == annexed[meta_target]
    assert {path: path.read_bytes() for path in annex.iterdir()} == annexed
    mlflow_run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.metrics == {"loss": 0.5, "acc": 0.9} and mlflow_run.data.params == {"lr": "0.1"}


def test_a_link_to_a_fifo_is_still_refused_without_waiting_for_a_writer(store: Path, tmp_path: Path) -> None:
    StoreWriter(store).close()  # experiment 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (store / "0" / "tags").mkdir(exist_ok=True)
    (store / "0" / "tags" / "team").symlink_to(fifo)
    with pytest.raises(StoreError, match="it is a FIFO, expected a regular file"):
        StoreReader(store).get_experiment("0")
