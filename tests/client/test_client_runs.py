"""``trackd.Client`` creates experiments and runs and logs to them by id as ``mlflow.MlflowClient`` does, read back from ./mlruns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import pytest

from trackd import Client, ClientConfig, RunStatus
from trackd.errors import ExperimentExists, InvalidArgument
from trackd.store import Metric

T0 = 1_700_000_000_000


class KeyValue(NamedTuple):
    """A param or tag for log_batch, as mlflow.entities.Param."""

    key: str
    value: object


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
