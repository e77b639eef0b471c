"""A ``log_batch`` that names a key twice does what MLflow's FileStore does with it, checked on both sides.

MLflow refuses a param key given twice in one batch, even with the same value
(``_validate_param_keys_unique``), logs both points of a metric key given twice, and keeps the
last value of a tag key given twice. MLflow runs in this process on a store of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd import Client, InvalidArgument
from trackd.entities import Metric, Param, RunTag

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow import entities as mlflow_entities  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

T0 = 1_700_000_000_000


def _mlflow_client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(str(tmp_path / "mlflow-store"))


@pytest.mark.parametrize(
    "pairs",
    [
        [("lr", "0.1"), ("lr", "0.1")],  # the same value: trackd used to accept this
        [("lr", "0.1"), ("lr", "0.2")],
        [("a", "1"), ("a", "1"), ("b", "2"), ("a", "1"), ("b", "2")],
    ],
)
def test_log_batch_refuses_a_param_key_given_twice_with_mlflows_message(
    client: Client, tmp_path: Path, pairs: list[tuple[str, str]]
) -> None:
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    with pytest.raises(MlflowException) as their_error:
        theirs.log_batch(their_run, params=[mlflow_entities.Param(k, v) for k, v in pairs])
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument) as our_error:
        client.log_batch(run_id, metrics=[Metric("m", 1.0, T0, 0)], params=[Param(k, v) for k, v in pairs])
    assert str(our_error.value) == their_error.value.message
    # Nothing of the refused batch is logged, on either side.
    assert client.get_run(run_id).data.params == {} and client.get_run(run_id).data.metrics == {}
    assert theirs.get_run(their_run).data.params == {}


def test_duplicate_param_keys_are_refused_before_a_value_is_checked_against_the_run(client: Client, tmp_path: Path) -> None:
    # MLflow checks the batch's keys before the run's logged values: the duplicate is what it names.
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    theirs.log_param(their_run, "lr", "0.1")
    with pytest.raises(MlflowException, match="Duplicate parameter keys"):
        theirs.log_batch(their_run, params=[mlflow_entities.Param("lr", "0.5"), mlflow_entities.Param("lr", "0.5")])
    run_id = client.create_run().info.run_id
    client.log_param(run_id, "lr", "0.1")
    with pytest.raises(InvalidArgument, match=r"Duplicate parameter keys have been submitted: \['lr'\]"):
        client.log_batch(run_id, params=[Param("lr", "0.5"), Param("lr", "0.5")])


def test_log_batch_logs_both_points_of_a_metric_key_and_the_last_value_of_a_tag_key_as_mlflow_does(
    client: Client, tmp_path: Path
) -> None:
    metrics = [("loss", 1.0, T0, 0), ("loss", 2.0, T0 + 1, 0)]
    tags = [("note", "first"), ("note", "last")]
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    theirs.log_batch(
        their_run, metrics=[mlflow_entities.Metric(*m) for m in metrics], tags=[mlflow_entities.RunTag(*t) for t in tags]
    )
    run_id = client.create_run().info.run_id
    client.log_batch(run_id, metrics=[Metric(*m) for m in metrics], tags=[RunTag(*t) for t in tags])
    ours = [(m.key, m.value, m.timestamp, m.step) for m in client.get_metric_history(run_id, "loss")]
    assert ours == [(m.key, m.value, m.timestamp, m.step) for m in theirs.get_metric_history(their_run, "loss")]
    assert ours == metrics
    assert client.get_run(run_id).data.tags["note"] == theirs.get_run(their_run).data.tags["note"] == "last"
