"""Values past MLflow's length limits are handled as MLflow 3 handles them, and real MLflow reads the result.

MLflow truncates a param value past 6000 characters (log_param, log_params, log_batch) and a tag value
past 8000 in log_batch (so the fluent set_tags) with a warning, unless MLFLOW_TRUNCATE_LONG_VALUES is
false, when it raises; set_tag, create_run's tags, a run name and a description are stored whole.
trackd raised "MLflow allows at most 6000/8000" for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from fluent_helpers import fluent_env, run_child
from helpers import DaemonProcess

from trackd import Client, InvalidArgument
from trackd.protocol import MAX_TEXT_LENGTH

mlflow = pytest.importorskip("mlflow")


class KeyValue(NamedTuple):
    """A param or tag for log_batch, as mlflow.entities.Param."""

    key: str
    value: object


@pytest.fixture
def run(client: Client) -> Iterator[str]:
    yield client.create_run(run_name="long").info.run_id


def _stored(store: Path, run_id: str) -> tuple[dict[str, str], dict[str, str], str]:
    """The run's params, tags and name as real MLflow reads them."""
    read = mlflow.MlflowClient(tracking_uri=str(store)).get_run(run_id)
    return dict(read.data.params), dict(read.data.tags), read.info.run_name


def test_log_param_past_6000_characters_is_truncated_with_one_warning_line(
    client: Client, run: str, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # This used to raise InvalidArgument ("MLflow allows at most 6000"), where MLflow truncates.
    client.log_param(run, "config", "x" * 6001)
    client.log_param(run, "config", "x" * 6001)  # the same value again: the same truncated param, no change
    client.flush()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "trackd: truncated the value of param 'config' from 6001 to 6000 characters (MLflow's length limit; "
        "MLflow truncates it too, and raises instead when MLFLOW_TRUNCATE_LONG_VALUES=false).",
    ] * 2
    params, _, _ = _stored(store, run)
    assert params["config"] == "x" * 6000


def test_log_batch_truncates_params_and_tags_in_one_warning_line(
    client: Client, run: str, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client.log_batch(
        run, params=[KeyValue("p", "p" * 7000), KeyValue("short", "s")], tags=[KeyValue("t", "t" * 9000)]
    )
    client.flush()
    (line,) = capsys.readouterr().err.splitlines()
    assert "param 'p' from 7000 to 6000 characters; tag 't' from 9000 to 8000 characters" in line
    params, tags, _ = _stored(store, run)
    assert (len(params["p"]), params["short"], len(tags["t"])) == (6000, "s", 8000)


def test_false_truncate_variable_raises_and_logs_nothing(
    client: Client, run: str, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "False")
    with pytest.raises(InvalidArgument, match=r"param 'config': it has 6001 characters.*MLFLOW_TRUNCATE_LONG_VALUES is false"):
        client.log_param(run, "config", "x" * 6001)
    with pytest.raises(InvalidArgument, match=r"tag 't': it has 8001 characters"):
        client.log_batch(run, params=[KeyValue("ok", "1")], tags=[KeyValue("t", "t" * 8001)])
    client.flush()
    params, _, _ = _stored(store, run)
    assert params == {}


def test_unreadable_truncate_variable_is_named(client: Client, run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "yes")
    with pytest.raises(InvalidArgument, match="MLFLOW_TRUNCATE_LONG_VALUES='yes'"):
        client.log_param(run, "config", "x" * 6001)


def test_set_tag_run_name_and_creation_tags_are_stored_whole(
    client: Client, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # FileStore.set_tag and create_run check no tag length: MLflow stores these 9000 characters whole.
    run = client.create_run(run_name="n" * 9000, tags={"mlflow.note.content": "d" * 9000}).info.run_id
    client.set_tag(run, "big", "b" * 9000)
    client.flush()
    params, tags, name = _stored(store, run)
    assert (len(name), len(tags["mlflow.note.content"]), len(tags["big"])) == (9000, 9000, 9000)
    assert capsys.readouterr().err == ""


def test_tag_past_what_one_record_carries_is_refused_naming_trackds_bound(client: Client, run: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"tag 'big': it has {MAX_TEXT_LENGTH + 1} characters, and trackd carries at most {MAX_TEXT_LENGTH}"):
        client.set_tag(run, "big", "b" * (MAX_TEXT_LENGTH + 1))


def test_fluent_set_tags_and_log_params_truncate_as_mlflow_does(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import trackd
        with trackd.start_run(run_name="r" * 9000, description="d" * 9000) as run:
            trackd.set_tags({"t": "t" * 9000})
            trackd.log_params({"p": "p" * 6001})
        print(run.info.run_id)
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "trackd: truncated the value of tag 't' from 9000 to 8000 characters (MLflow's length limit; "
        "MLflow truncates it too, and raises instead when MLFLOW_TRUNCATE_LONG_VALUES=false).",
        "trackd: truncated the value of param 'p' from 6001 to 6000 characters (MLflow's length limit; "
        "MLflow truncates it too, and raises instead when MLFLOW_TRUNCATE_LONG_VALUES=false).",
    ]
    params, tags, name = _stored(store, result.stdout.split()[-1])
    assert (len(tags["t"]), len(params["p"]), len(tags["mlflow.note.content"]), len(name)) == (8000, 6000, 9000, 9000)
