"""A ``log_batch`` that names a key twice does what MLflow's FileStore does with it, checked on both sides.

MLflow refuses a param key given twice in one batch, even with the same value
(``_validate_param_keys_unique``), logs both points of a metric key given twice, and keeps the
last value of a tag key given twice. MLflow runs in this process on a store of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd import Client, InvalidArgument, ParamChangedError
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


def _params(values: dict[int, str], count: int = 120) -> list[tuple[str, str]]:
    """``count`` distinct params, then those of ``values`` (index: value) appended as k{index} again."""
    return [(f"k{i}", str(i)) for i in range(count)] + [(f"k{i}", value) for i, value in values.items()]


def test_a_param_key_repeated_in_another_chunk_of_100_with_the_same_value_is_taken_as_mlflow_takes_it(
    client: Client, tmp_path: Path
) -> None:
    # MLflow's client sends params in chunks of 100 and checks repeats per chunk: a review found this
    # batch (k0 again at position 120) refused by trackd and taken by MLflow.
    pairs = _params({0: "0"})
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    theirs.log_batch(their_run, params=[mlflow_entities.Param(*p) for p in pairs])
    run_id = client.create_run().info.run_id
    client.log_batch(run_id, params=[Param(*p) for p in pairs])
    assert client.get_run(run_id).data.params == theirs.get_run(their_run).data.params == dict(pairs)


def test_a_param_key_repeated_in_another_chunk_with_another_value_is_a_changed_param(client: Client, tmp_path: Path) -> None:
    pairs = _params({0: "other"})
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    with pytest.raises(MlflowException, match="Changing param values is not allowed") as their_error:
        theirs.log_batch(their_run, params=[mlflow_entities.Param(*p) for p in pairs])
    run_id = client.create_run().info.run_id
    with pytest.raises(ParamChangedError) as our_error:
        client.log_batch(run_id, params=[Param(*p) for p in pairs])
    assert str(our_error.value) == their_error.value.message.replace(their_run, run_id)
    # MLflow wrote the first chunk before it refused the second; trackd logs nothing of the batch.
    assert client.get_run(run_id).data.params == {}


def test_a_param_key_twice_within_the_second_chunk_is_refused_as_mlflow_refuses_it(client: Client, tmp_path: Path) -> None:
    pairs = _params({105: "105"}, count=110)  # k105 at 105 and 110: both in the second chunk
    theirs = _mlflow_client(tmp_path)
    their_run = theirs.create_run("0").info.run_id
    with pytest.raises(MlflowException, match=r"Duplicate parameter keys have been submitted: \['k105'\]"):
        theirs.log_batch(their_run, params=[mlflow_entities.Param(*p) for p in pairs])
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match=r"Duplicate parameter keys have been submitted: \['k105'\]"):
        client.log_batch(run_id, params=[Param(*p) for p in pairs])
