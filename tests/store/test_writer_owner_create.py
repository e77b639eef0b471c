"""An owner's create of a run another create made first gives it the owner's name, user, start time and tags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlflow.tracking import MlflowClient
from store_helpers import RUN_ID, START_MS, new_run, writer_with_run

from trackd.store import StoreWriter, TagWrite, WriteBatch

OWNER_START_MS = START_MS + 5_000


def owner_create(experiment_id: str) -> WriteBatch:
    """Rank 0's create of RUN_ID: its own name, user, start time, description and tags."""
    item = new_run(experiment_id, **{"lr": "0.1", "mlflow.note.content": "rank 0", "mlflow.user": "bob"})
    owner = dataclasses.replace(item, run_name="resnet", user_id="bob", start_time_ms=OWNER_START_MS, owner=True)
    return WriteBatch(new_runs=[owner])


def test_an_owner_create_of_an_existing_run_applies_its_name_user_start_time_and_tags(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id, rank="1")])) == []  # rank 1's, first
    run = tmp_path / experiment_id / RUN_ID
    assert writer.write(owner_create(experiment_id)) == []
    read = MlflowClient(tracking_uri=str(tmp_path)).get_run(RUN_ID)
    assert (read.info.run_name, read.info.user_id, read.info.start_time) == ("resnet", "bob", OWNER_START_MS)
    tags = read.data.tags
    assert (tags["mlflow.runName"], tags["lr"], tags["mlflow.note.content"], tags["mlflow.user"]) == ("resnet", "0.1", "rank 0", "bob")
    assert tags["rank"] == "1"  # a tag only the first create set stays
    assert "run_uuid: " in (run / "meta.yaml").read_text()  # rewritten as MLflow <= 2.22 reads it too


def test_an_owner_create_applied_again_after_a_rename_by_the_owner_keeps_the_order(tmp_path: Path) -> None:
    # A restarted daemon or a replayed spool sends the owner's create again, then the owner's later records.
    writer, run = writer_with_run(tmp_path)
    batch = owner_create(run.parent.name)
    for _ in range(2):
        assert writer.write(batch) == []
        assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "mlflow.runName", "renamed")])) == []
    assert MlflowClient(tracking_uri=str(tmp_path)).get_run(RUN_ID).info.run_name == "renamed"


def test_an_attach_create_changes_nothing_and_an_owner_create_of_a_deleted_run_neither(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    meta = run / "meta.yaml"
    attach = dataclasses.replace(owner_create(run.parent.name).new_runs[0], owner=False)
    before = meta.read_bytes()
    assert writer.write(WriteBatch(new_runs=[attach])) == []
    assert meta.read_bytes() == before and not (run / "tags" / "lr").exists()
    meta.write_text(meta.read_text().replace("lifecycle_stage: active", "lifecycle_stage: deleted"))
    deleted = meta.read_bytes()
    assert StoreWriter(tmp_path).write(owner_create(run.parent.name)) == []
    assert meta.read_bytes() == deleted and not (run / "tags" / "lr").exists()


def test_an_owner_create_in_another_experiment_is_still_refused(tmp_path: Path) -> None:
    writer, _ = writer_with_run(tmp_path)
    (failure,) = writer.write(owner_create("0"))
    assert "already exists in experiment" in failure.message
