"""``trackd.entities.Metric`` has MLflow 3's fields: ``model_id``, ``dataset_name``, ``dataset_digest``, ``run_id``.

``Metric(..., run_id=...)`` raised TypeError where MLflow 3's ``Metric`` takes it, and the Metrics
``get_metric_history`` returned had no ``run_id``, where MLflow 3's name their run.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import mlflow.entities
import pytest
from mlflow import MlflowClient

import trackd
from trackd import Client, InvalidArgument
from trackd.entities import Metric

T0 = 1_700_000_000_000
LINKED = {"model_id": "m-1", "dataset_name": "train", "dataset_digest": "abc123", "run_id": "r" * 32}


@pytest.mark.parametrize("fields", [{}, {"run_id": "r" * 32}, LINKED, {"dataset_name": "train", "dataset_digest": "abc123"}])
def test_metric_takes_mlflow_3s_fields_and_gives_mlflows_dictionary(fields: dict[str, str]) -> None:
    ours = Metric("loss", 0.5, T0, 3, **fields)
    theirs = mlflow.entities.Metric("loss", 0.5, T0, 3, **fields)
    assert ours.to_dictionary() == theirs.to_dictionary()
    assert list(ours.to_dictionary()) == list(theirs.to_dictionary())
    assert Metric.from_dictionary(theirs.to_dictionary()) == ours
    # Positionally too, in MLflow's order.
    assert Metric("loss", 0.5, T0, 3, "m-1", "train", "abc123", "r" * 32) == Metric("loss", 0.5, T0, 3, **LINKED)


@pytest.mark.parametrize("fields", [{"dataset_name": "train"}, {"dataset_digest": "abc123"}])
def test_a_dataset_name_without_its_digest_is_refused_in_mlflows_words(fields: dict[str, str]) -> None:
    with pytest.raises(mlflow.exceptions.MlflowException) as theirs:
        mlflow.entities.Metric("loss", 0.5, T0, 3, **fields)
    with pytest.raises(InvalidArgument) as ours:
        Metric("loss", 0.5, T0, 3, **fields)
    assert str(ours.value) == theirs.value.message
    assert ours.value.error_code == theirs.value.error_code == "INVALID_PARAMETER_VALUE"


def test_from_dictionary_without_a_required_key_is_refused_in_mlflows_words() -> None:
    with pytest.raises(mlflow.exceptions.MlflowException) as theirs:
        mlflow.entities.Metric.from_dictionary({"key": "loss", "timestamp": T0, "step": 0})
    with pytest.raises(InvalidArgument) as ours:
        Metric.from_dictionary({"key": "loss", "timestamp": T0, "step": 0})
    assert str(ours.value) == theirs.value.message


def test_equality_hash_copy_and_replace_cover_the_new_fields() -> None:
    metric = Metric("loss", 0.5, T0, 3, **LINKED)
    assert metric != Metric("loss", 0.5, T0, 3) and metric != metric.replace(run_id="s" * 32)
    assert hash(metric) == hash(Metric("loss", 0.5, T0, 3, **LINKED))
    assert pickle.loads(pickle.dumps(metric)) == copy.deepcopy(metric) == metric
    assert metric.replace(step=4).run_id == "r" * 32
    assert "run_id='" + "r" * 32 + "'" in repr(metric)
    with pytest.raises(AttributeError):
        setattr(metric, "run_id", "x")
    # Slots, as before: a history of a million points holds no dict per point.
    assert not hasattr(metric, "__dict__")


def test_get_metric_history_names_the_run_as_mlflow_3s_does(client: Client, store: Path) -> None:
    run_id = client.create_run().info.run_id
    for step in range(3):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), timestamp=T0 + step, step=step)
    ours = client.get_metric_history(run_id, "loss")
    theirs = MlflowClient(str(store)).get_metric_history(run_id, "loss")
    assert [m.to_dictionary() for m in ours] == [m.to_dictionary() for m in theirs]
    assert all(m.run_id == run_id and m.model_id is None and m.dataset_name is None for m in ours)
    # A run's latest values stay plain floats.
    assert client.get_run(run_id).data.metrics == {"loss": 1.0 / 3}


def test_a_line_mlflow_wrote_with_a_dataset_reads_back_its_dataset(client: Client, store: Path) -> None:
    run_id = client.create_run().info.run_id
    client.flush()
    MlflowClient(str(store)).log_batch(run_id, metrics=[mlflow.entities.Metric("acc", 0.9, T0, 0, dataset_name="val", dataset_digest="d1")])
    [ours] = client.get_metric_history(run_id, "acc")
    [theirs] = MlflowClient(str(store)).get_metric_history(run_id, "acc")
    assert ours.to_dictionary() == theirs.to_dictionary()
    assert (ours.dataset_name, ours.dataset_digest, ours.run_id) == ("val", "d1", run_id)


def test_log_batch_logs_to_its_run_id_argument_whatever_the_metrics_run_id(client: Client, store: Path, tmp_path: Path) -> None:
    # A history read from one run, logged into another, as MLflow's log_batch does it.
    source, target = client.create_run().info.run_id, client.create_run().info.run_id
    client.log_metric(source, "loss", 0.5, timestamp=T0, step=1)
    history = client.get_metric_history(source, "loss")
    client.log_batch(target, metrics=history)
    mlflow_client = MlflowClient(str(tmp_path / "theirs"))
    their_target = mlflow_client.create_run("0").info.run_id
    mlflow_client.log_batch(their_target, metrics=[mlflow.entities.Metric("loss", 0.5, T0, 1, run_id=source)])
    ours = client.get_metric_history(target, "loss")
    theirs = mlflow_client.get_metric_history(their_target, "loss")
    assert [(m.value, m.timestamp, m.step, m.run_id) for m in ours] == [(0.5, T0, 1, target)]
    assert [(m.value, m.timestamp, m.step, m.run_id) for m in theirs] == [(0.5, T0, 1, their_target)]
    assert len(client.get_metric_history(source, "loss")) == 1


@pytest.mark.parametrize("link", [{"model_id": "m-1"}, {"dataset_name": "val", "dataset_digest": "d1"}])
def test_log_batch_refuses_a_metric_linked_to_a_model_or_dataset_and_logs_nothing(client: Client, link: dict[str, str]) -> None:
    # MLflow writes the link; trackd would have logged the point without it, silently.
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match="trackd logs no link to a logged model or a dataset"):
        client.log_batch(run_id, metrics=[Metric("a", 1.0, T0, 0), mlflow.entities.Metric("b", 1.0, T0, 0, **link)])
    assert client.get_run(run_id).data.metrics == {}


def test_trackd_metric_is_the_entities_metric() -> None:
    assert trackd.Metric is Metric
