"""StoreWriter: a store, its experiments and its runs made as MLflow makes them, also after the store was deleted under the writer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trackd.errors import ExperimentExists
from trackd.store import StoreWriter, WriteBatch

from store_helpers import RUN_ID, START_MS, new_run, writer_with_run


def test_new_store_has_default_experiment_and_trash(tmp_path: Path) -> None:
    StoreWriter(tmp_path / "mlruns").close()
    meta = (tmp_path / "mlruns" / "0" / "meta.yaml").read_text()
    assert meta.startswith(f"artifact_location: {(tmp_path / 'mlruns' / '0').as_uri()}\ncreation_time: ")
    assert meta.endswith(
        "effective_trace_archival_retention: null\nexperiment_id: '0'\nlast_update_time: "
        + meta.split("last_update_time: ")[1].split("\n")[0]
        + "\nlifecycle_stage: active\nname: Default\ntrace_location: null\nworkspace: default\n"
    )
    assert (tmp_path / "mlruns" / ".trash").is_dir()


def test_staging_folders_a_crash_left_are_removed_when_a_writer_opens_the_store(tmp_path: Path) -> None:
    StoreWriter(tmp_path / "mlruns").close()
    stale = tmp_path / "mlruns" / ".trackd-0123456789abcdef.trash"
    fresh = tmp_path / "mlruns" / ".trackd-fedcba9876543210.trash"
    for folder in (stale, fresh):
        (folder / "metrics").mkdir(parents=True)
    os.utime(stale, (1_000_000_000, 1_000_000_000))  # 2001: left by a crash long ago
    StoreWriter(tmp_path / "mlruns").close()
    assert not stale.exists()
    assert fresh.is_dir()  # it may be another daemon's build under way
    assert (tmp_path / "mlruns" / ".trash").is_dir()  # MLflow's own trash is not a staging folder


def test_experiment_meta_is_byte_identical_to_mlflows(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path)
    experiment_id = writer.create_experiment("exp-A", tags={"note": "multi\nline"}, now_ms=1795665806555)
    assert len(experiment_id) == 18 and experiment_id.isdigit()
    assert (tmp_path / experiment_id / "meta.yaml").read_bytes() == (
        f"artifact_location: {(tmp_path / experiment_id).as_uri()}\ncreation_time: 1795665806555\n"
        f"effective_trace_archival_retention: null\nexperiment_id: '{experiment_id}'\n"
        "last_update_time: 1795665806555\nlifecycle_stage: active\nname: exp-A\n"
        "trace_location: null\nworkspace: default\n"
    ).encode()
    assert (tmp_path / experiment_id / "tags" / "note").read_bytes() == b"multi\nline"
    assert writer.get_experiment_id_by_name("exp-A") == experiment_id
    assert writer.get_experiment_id_by_name("missing") is None


def test_experiment_name_must_be_unique_among_active_and_deleted(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path)
    deleted_id = writer.create_experiment("gone", now_ms=START_MS)
    meta = tmp_path / deleted_id / "meta.yaml"  # as MLflow's delete_experiment does
    meta.write_text(meta.read_text().replace("lifecycle_stage: active", "lifecycle_stage: deleted"))
    os.rename(tmp_path / deleted_id, tmp_path / ".trash" / deleted_id)
    with pytest.raises(ExperimentExists, match="Experiment 'Default' already exists."):
        writer.create_experiment("Default", now_ms=START_MS)
    with pytest.raises(ExperimentExists, match="already exists in deleted state"):
        writer.create_experiment("gone", now_ms=START_MS)


def test_new_run_has_folders_tags_and_meta_with_run_uuid(tmp_path: Path) -> None:
    _, run = writer_with_run(tmp_path)
    experiment_id = run.parent.name
    assert sorted(p.name for p in run.iterdir()) == ["artifacts", "meta.yaml", "metrics", "params", "tags"]
    assert (run / "tags" / "mlflow.runName").read_bytes() == b"run-a"
    assert (run / "meta.yaml").read_bytes() == (
        f"artifact_uri: {(tmp_path / experiment_id).as_uri()}/{RUN_ID}/artifacts\nend_time: null\n"
        f"entry_point_name: ''\nexperiment_id: '{experiment_id}'\nlifecycle_stage: active\n"
        f"run_id: {RUN_ID}\nrun_name: run-a\nrun_uuid: {RUN_ID}\nsource_name: ''\nsource_type: 4\n"
        f"source_version: ''\nstart_time: {START_MS}\nstatus: 1\ntags: []\nuser_id: alice\n"
    ).encode()
    assert oct(os.stat(run / "meta.yaml").st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trackd-")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_new_run_is_idempotent_in_the_same_experiment(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    before = (run / "meta.yaml").read_bytes()
    again = new_run(run.parent.name)
    assert writer.write(WriteBatch(new_runs=[again])) == []
    assert StoreWriter(tmp_path).write(WriteBatch(new_runs=[again])) == []  # a fresh writer scans
    assert (run / "meta.yaml").read_bytes() == before


def test_new_run_fails_in_another_or_a_missing_experiment(tmp_path: Path) -> None:
    writer, _ = writer_with_run(tmp_path)
    failures = writer.write(WriteBatch(new_runs=[new_run("0"), new_run("123", run_id="b" * 32)]))
    assert [f.item for f in failures] == [f"new run {RUN_ID}", f"new run {'b' * 32}"]
    assert "already exists in experiment" in failures[0].message
    assert "no such experiment exists" in failures[1].message


def test_a_store_deleted_under_a_live_writer_is_made_again_for_new_runs(tmp_path: Path) -> None:
    # This used to refuse every new run ("no such experiment exists") until the daemon restarted.
    import shutil

    from store_helpers import new_run

    writer, _ = writer_with_run(tmp_path)
    shutil.rmtree(writer.root)
    assert writer.write(WriteBatch(new_runs=[new_run("0", "e" * 32)])) == []
    assert (Path(writer.root) / "0" / ("e" * 32) / "meta.yaml").is_file()


def test_an_experiment_can_be_created_after_the_store_was_deleted_under_the_writer(tmp_path: Path) -> None:
    import shutil

    writer, _ = writer_with_run(tmp_path)
    shutil.rmtree(writer.root)
    experiment_id = writer.create_experiment("again", now_ms=1)
    assert (Path(writer.root) / experiment_id / "meta.yaml").is_file()
    assert (Path(writer.root) / "0" / "meta.yaml").is_file()


def test_default_is_found_and_not_made_twice_after_the_store_was_deleted_under_the_writer(tmp_path: Path) -> None:
    # A daemon keeps a store's writer while the store is removed (a test suite's tmp folder, an
    # `rm -rf mlruns` between jobs). "Default" was then not found, and create_experiment("Default")
    # (Lightning's MLFlowLogger(experiment_name="Default") creates what it does not find) made a
    # second experiment of that name beside the experiment 0 the build made again.
    from mlflow import MlflowClient

    writer, _ = writer_with_run(tmp_path)
    shutil.rmtree(writer.root)
    assert writer.get_experiment_id_by_name("Default") == "0"
    shutil.rmtree(writer.root)
    with pytest.raises(ExperimentExists, match="Experiment 'Default' already exists."):
        writer.create_experiment("Default", now_ms=START_MS)
    names = [e.name for e in MlflowClient(str(tmp_path)).search_experiments()]
    assert names == ["Default"]


RACE = """
import os, sys
from trackd.store import StoreWriter, WriteBatch
sys.path.insert(0, sys.argv[3])
from store_helpers import new_run
base, rounds = sys.argv[1], int(sys.argv[2])
for i in range(rounds):
    go = os.path.join(base, f"go-{i}")
    while not os.path.exists(go):
        pass
    writer = StoreWriter(os.path.join(base, f"s{i}", "mlruns"))
    assert writer.write(WriteBatch(new_runs=[new_run("0")])) == [], i
    writer.close()
print("ok", flush=True)
"""


def test_two_daemons_making_a_fresh_store_and_one_run_at_once_both_succeed(tmp_path: Path) -> None:
    # One daemon per node on a shared store (or per socket on one machine): both build experiment 0
    # and the run of a distributed job. The later rename failed with "Directory not empty" and the
    # job's set_experiment or start_run raised.
    rounds = 40
    children = [
        subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(rounds), str(Path(__file__).parent)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for i in range(rounds):
        (tmp_path / f"go-{i}").touch()  # both children start this round's store at once
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    for i in range(rounds):
        root = tmp_path / f"s{i}" / "mlruns"
        assert sorted(p.name for p in root.iterdir()) == [".trash", "0"]
        assert (root / "0" / "meta.yaml").is_file() and (root / "0" / RUN_ID / "meta.yaml").is_file()


@pytest.mark.parametrize("location", ["rel/arts", "file:rel/arts"])
def test_a_relative_artifact_location_is_refused_by_the_writer(tmp_path: Path, location: str) -> None:
    # Resolved against the daemon's working folder it put a run's artifacts under / (the client
    # resolves it in its own folder first, as MLflow's FileStore does in-process).
    from trackd.errors import InvalidArgument

    writer = StoreWriter(tmp_path)
    with pytest.raises(InvalidArgument, match="a relative path; expected an absolute path or URI"):
        writer.create_experiment("e", artifact_location=location, now_ms=1)
    writer.close()
