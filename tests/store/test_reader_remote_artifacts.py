"""list_artifacts of a run whose artifacts are not on this machine raises, as download_artifacts does."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd.errors import InvalidArgument
from trackd.store import StoreReader

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.mark.parametrize("location", ["s3://bucket/path", "mlflow-artifacts:/0/x", "gs://b/p"])
@pytest.mark.parametrize("path", [None, "cfg"])
def test_list_artifacts_of_remote_artifacts_raises_invalid_argument(tmp_path: Path, location: str, path: str | None) -> None:
    client = MlflowClient(tracking_uri=str(tmp_path))
    run_id = client.create_run(client.create_experiment("remote", artifact_location=location)).info.run_id
    reader = StoreReader(tmp_path)
    # This used to return [], as if the run had no artifacts.
    with pytest.raises(InvalidArgument, match=f"artifacts are at '{location}/{run_id}/artifacts', which trackd does not read") as listing:
        reader.list_artifacts(run_id, path)
    with pytest.raises(InvalidArgument) as local:
        reader.artifact_local_path(run_id, path)
    assert str(listing.value) == str(local.value)
