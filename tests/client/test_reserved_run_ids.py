"""Run ids that name an experiment's own folders (tags, traces, datasets, models) are refused.

MLflow's file store keeps an experiment's tags, traces, datasets and logged models in folders of
these names beside its runs (FileStore.RESERVED_EXPERIMENT_FOLDERS) and never reads one as a run;
MLflow itself makes no run of such an id (its start_run(run_id="tags") raises "Run 'tags' not
found"). trackd created one: ``start_run(run_id="tags")`` succeeded, and the run's params, metrics
and tags were written into the experiment's tags folder, where MLflow's get_experiment read them as
the experiment's tags. Now the call raises, and the daemon refuses a client's record that names one.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, only_run, run_child
from helpers import DaemonProcess, create_run_record, replies_to_batch

from trackd import Client, ClientConfig, InvalidArgument
from trackd.protocol import Rejected, RecordKind

RESERVED = ["tags", "traces", "datasets", "models", "Tags"]  # "Tags" is "tags" on macOS's filesystem

START = """
import trackd
from trackd.errors import InvalidArgument
try:
    trackd.start_run(run_id={run_id!r})
except InvalidArgument as exc:
    print(exc)
with trackd.start_run(run_name="after"):
    trackd.log_param("p", "v")
"""


@pytest.mark.parametrize("run_id", RESERVED)
def test_start_run_of_a_reserved_run_id_raises_and_writes_nothing(daemon: DaemonProcess, store: Path, run_id: str) -> None:
    result = run_child(START.format(run_id=run_id), fluent_env(daemon, store))
    assert result.returncode == 0, result.stderr
    # This used to make the run, in the experiment's tags folder when the id was "tags".
    assert result.stdout.startswith(f"Invalid run id {run_id!r}: MLflow's file store keeps folders of these names"), result.stdout
    assert f"raises \"Run '{run_id}' not found\"" in result.stdout
    assert not (store / "0" / run_id).exists()
    assert only_run(store).data.params == {"p": "v"}  # the process goes on logging
    assert mlflow_reader(store).get_experiment("0").tags == {}


def test_create_run_of_a_reserved_run_id_raises(daemon: DaemonProcess, store: Path) -> None:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        with pytest.raises(InvalidArgument, match="Invalid run id 'models'"):
            client.create_run("0", run_id="models")
        client.flush(timeout=30)
    assert not (store / "0" / "models").exists()


def test_the_daemon_refuses_a_reserved_run_id_sent_by_a_client_that_did_not_check_it(daemon: DaemonProcess, store: Path) -> None:
    # A client of another version, a spool written before this check, or a crafted frame.
    good = uuid.uuid4().hex
    records = [
        create_run_record("tags"),
        (RecordKind.PARAM.value, "tags", "lr", "0.1"),
        (RecordKind.METRIC.value, "tags", "loss", 1.0, 1_700_000_000_000, 0),
        create_run_record(good),
        (RecordKind.PARAM.value, good, "lr", "0.1"),
    ]
    replies = replies_to_batch(daemon.paths.socket, store, records)
    assert len(replies) == 3 and all(isinstance(r, Rejected) for r in replies), replies
    assert all(r.message.startswith("Invalid run id 'tags': ") for r in replies if isinstance(r, Rejected)), replies
    # The experiment's tags folder holds no run's files, and MLflow reads no bogus experiment tag.
    assert not (store / "0" / "tags").exists()
    assert mlflow_reader(store).get_experiment("0").tags == {}
    assert only_run(store).data.params == {"lr": "0.1"}
