"""get_metric_history refuses the keys MLflow's reader refuses, before joining one onto the run's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import RUN_ID, START_MS, metrics, writer_with_run

from trackd.errors import InvalidArgument
from trackd.store import StoreReader

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

# A file in MLflow's metric format outside the store, which the key "../" * 20 + its path read.
OUTSIDE = "1700000000000 42.0 7\n"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "mlruns"
    writer, _ = writer_with_run(root)
    assert writer.write(metrics("a/b", (START_MS, 7.0, 1))) == []
    (tmp_path / "outside").write_text(OUTSIDE)
    return root


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a/b/",
        "a//b",
        "./a/b",
        "a/./b",
        "../meta.yaml",
        "../../../../../../../../../../../../../../../../../../../../etc/hostname",
        "/etc/hostname",
        "a\tb",
    ],
)
def test_a_key_mlflow_refuses_raises_invalid_argument(store: Path, key: str) -> None:
    with pytest.raises(MlflowException) as theirs:
        MlflowClient(tracking_uri=str(store)).get_metric_history(RUN_ID, key)
    # This used to read the file the key named: [] for "a/b/" and "", points for "./a/b", and
    # for "../meta.yaml" an error quoting that file's first line.
    with pytest.raises(InvalidArgument) as ours:
        StoreReader(store).get_metric_history(RUN_ID, key)
    assert ours.value.error_code == theirs.value.error_code == "INVALID_PARAMETER_VALUE"
    assert repr(key) in str(ours.value)


def test_no_key_reads_a_file_outside_the_run(store: Path) -> None:
    key = "../" * 20 + str(store.parent / "outside").lstrip("/")
    # This used to return [Metric(key=..., value=42.0, step=7)].
    with pytest.raises(InvalidArgument, match="must be relative and normalized"):
        StoreReader(store).get_metric_history(RUN_ID, key)


def test_the_key_is_checked_before_the_run_is_looked_up_as_mlflow_does(store: Path) -> None:
    unknown = "f" * 32
    with pytest.raises(MlflowException) as theirs:
        MlflowClient(tracking_uri=str(store)).get_metric_history(unknown, "a/b/")
    with pytest.raises(InvalidArgument) as ours:
        StoreReader(store).get_metric_history(unknown, "a/b/")
    assert ours.value.error_code == theirs.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("key", ["a/b", "a", "b", "x y:z-1.0_"])
def test_a_key_mlflow_accepts_reads_what_mlflow_reads(store: Path, key: str) -> None:
    theirs = [(m.key, m.value, m.step) for m in MlflowClient(tracking_uri=str(store)).get_metric_history(RUN_ID, key)]
    ours = [(m.key, m.value, m.step) for m in StoreReader(store).get_metric_history(RUN_ID, key)]
    assert ours == theirs
