"""A metric value written as text (``"0.93"``) is stored as that number, as MLflow takes it.

MLflow's client logs ``float(value)`` in ``log_metric`` (convert_metric_value_to_float_if_possible),
and its file store takes text in ``log_metrics`` and ``log_batch`` too: code that logged a value
parsed from a log line or a CSV ran on MLflow and raised on trackd. MLflow runs in this process on
a store of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import trackd
from trackd import Client, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

T0 = 1_700_000_000_000
TEXTS = ["0.93", b"1.5", " 2 ", "1e-3", "-7", "nan", "inf"]


def _history(client: MlflowClient | Client, run_id: str, key: str) -> list[tuple[float, int]]:
    return [(m.value, m.step) for m in client.get_metric_history(run_id, key)]


def test_log_metric_parses_text_as_mlflow_does(client: Client, tmp_path: Path) -> None:
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run(theirs.create_experiment("e")).info.run_id
    our_run = client.create_run("0").info.run_id
    for step, text in enumerate(TEXTS):
        theirs.log_metric(their_run, "m", text, T0, step)  # type: ignore[arg-type]
        client.log_metric(our_run, "m", text, T0, step)  # type: ignore[arg-type]
    client.flush()
    ours, mlflows = _history(client, our_run, "m"), _history(theirs, their_run, "m")
    assert repr(ours) == repr(mlflows)  # repr: nan == nan is False
    assert [value for value, _ in ours[:5]] == [0.93, 1.5, 2.0, 0.001, -7.0]


def test_fluent_log_metric_parses_text(store: Path, client: Client) -> None:
    trackd.set_tracking_uri(str(store))
    with trackd.start_run() as run:
        trackd.log_metric("acc", "0.5", step=3)  # type: ignore[arg-type]
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.5}


@pytest.mark.parametrize("text", ["one", "", "0.5.1", b"\xff"])
def test_text_that_is_no_number_is_refused_at_the_call_as_mlflow_refuses_it(client: Client, tmp_path: Path, text: object) -> None:
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run(theirs.create_experiment("e")).info.run_id
    with pytest.raises((MlflowException, TypeError)):  # TypeError: bytes it cannot parse, then not JSON
        theirs.log_metric(their_run, "m", text, T0, 0)  # type: ignore[arg-type]
    run_id = client.create_run("0").info.run_id
    with pytest.raises(InvalidArgument, match=r"for metric 'm': expected a real number .* float\(\) parses"):
        client.log_metric(run_id, "m", text, T0, 0)  # type: ignore[arg-type]


def test_log_metrics_and_log_batch_take_text_as_mlflows_do(client: Client, tmp_path: Path) -> None:
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run(theirs.create_experiment("e")).info.run_id
    theirs.log_batch(their_run, metrics=[mlflow.entities.Metric("m", "0.5", T0, 0)])
    run_id = client.create_run("0").info.run_id
    client.log_metrics(run_id, {"a": "0.25"}, step=1)  # type: ignore[dict-item]
    client.log_batch(run_id, metrics=[trackd.entities.Metric("m", "0.5", T0, 0)])  # type: ignore[arg-type]
    client.flush()
    assert _history(client, run_id, "m") == _history(theirs, their_run, "m") == [(0.5, 0)]
    assert _history(client, run_id, "a") == [(0.25, 1)]
    with pytest.raises(InvalidArgument, match="for metric 'b': expected a real number"):
        client.log_metrics(run_id, {"b": "x"})  # type: ignore[dict-item]
