"""StoreWriter: layout, exact bytes, and failures that never stop the rest of a batch."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trackd.errors import ExperimentExists
from trackd.store import _confinement as confinement_module
from trackd.store import _run_handles as run_handles_module
from trackd.store import _write_rules as write_rules
from trackd.store import (
    ArtifactWrite,
    MetricAppend,
    MetricFileCache,
    ParamWrite,
    StoreWriter,
    TagWrite,
    Termination,
    WriteBatch,
    WriteJournal,
)

from store_helpers import RUN_ID, START_MS, new_run, writer_with_run


def metrics(key: str, *points: tuple[int, float, int], run_id: str = RUN_ID) -> WriteBatch:
    return WriteBatch(metrics={(run_id, key): MetricAppend(run_id, key, list(points), ["o"])})


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


def test_metric_lines_have_mlflows_exact_bytes(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    points = [(1, 7.0, 0), (2, 1e20, -5), (3, 1.5e-7, 2**62), (4, float("nan"), 1), (5, float("inf"), 1), (6, 7, 2)]
    assert writer.write(metrics("loss", *points)) == []
    assert (run / "metrics" / "loss").read_bytes() == (
        b"1 7.0 0\n2 1e+20 -5\n3 1.5e-07 4611686018427387904\n4 nan 1\n5 inf 1\n6 7.0 2\n"
    )


def test_many_points_of_a_batch_are_appended_whole_and_in_order(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    points = [(START_MS + i, i / 3, i) for i in range(5000)]
    assert writer.write(metrics("acc/train", *points)) == []
    assert writer.write(metrics("acc/train", (1, 0.5, 9))) == []
    lines = (run / "metrics" / "acc" / "train").read_text().splitlines()
    assert lines == [f"{ts} {v!r} {s}" for ts, v, s in points] + ["1 0.5 9"]


def test_open_metric_files_stay_within_the_bound(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path, max_open_files=4)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    writer.write(WriteBatch(new_runs=[new_run(experiment_id)]))
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        assert writer.write(metrics(f"m{i}", (1, 1.0, 0))) == []
        assert len(os.listdir("/proc/self/fd")) <= before + 4
    writer.close()
    writer.close()
    assert len(os.listdir("/proc/self/fd")) == before


def one_point_each(keys: list[str], step: int, run_ids: tuple[str, ...] | list[str] = (RUN_ID,)) -> WriteBatch:
    """A write of one point (timestamp 1, value 0.5) at ``step`` to every key of every run."""
    return WriteBatch(
        metrics={(r, k): MetricAppend(r, k, [(1, 0.5, step)], ["o"]) for r in run_ids for k in keys}
    )


def writer_with_small_cache(tmp_path: Path, max_open_files: int = 32) -> tuple[StoreWriter, Path]:
    writer = StoreWriter(tmp_path / "mlruns", max_open_files=max_open_files)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id)])) == []
    return writer, tmp_path / "mlruns" / experiment_id / RUN_ID


def test_files_reopened_through_their_folder_keep_every_line_within_the_bound(tmp_path: Path) -> None:
    # 100 files and room for 32 descriptors (30 files, 2 folders): every round reopens most files.
    writer, run = writer_with_small_cache(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for step in range(3):
        assert writer.write(one_point_each([f"m{i}" for i in range(100)], step)) == []
        assert len(os.listdir("/proc/self/fd")) <= before + 32
    writer.close()
    assert all((run / "metrics" / f"m{i}").read_text() == "1 0.5 0\n1 0.5 1\n1 0.5 2\n" for i in range(100))


def test_remembered_metric_paths_stay_within_their_bound_and_every_line_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client inventing a key per step (f"loss_{step}") must not grow the daemon for ever.
    monkeypatch.setattr(run_handles_module, "MAX_REMEMBERED_METRIC_PATHS", 10)
    writer, run = writer_with_small_cache(tmp_path)
    for step in range(3):
        assert writer.write(one_point_each([f"m{i}" for i in range(25)], step)) == []
        assert writer._runs.remembered_paths <= 10
    writer.close()
    assert all((run / "metrics" / f"m{i}").read_text() == "1 0.5 0\n1 0.5 1\n1 0.5 2\n" for i in range(25))


def test_run_handles_stay_within_their_bound_and_a_forgotten_run_is_found_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_handles_module, "MAX_RUN_HANDLES", 3)
    writer, _ = writer_with_small_cache(tmp_path)
    run_ids = [f"{i:032x}" for i in range(1, 7)]
    experiment_id = writer.create_experiment("more", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id, run_id) for run_id in run_ids])) == []
    for step in range(2):
        assert writer.write(one_point_each(["loss"], step, run_ids)) == []
        assert len(writer._runs) <= 3
    writer.close()
    folder = tmp_path / "mlruns" / experiment_id
    assert all((folder / run_id / "metrics" / "loss").read_text() == "1 0.5 0\n1 0.5 1\n" for run_id in run_ids)


def test_a_link_at_one_metric_key_fails_that_metric_only_and_the_write_is_committed(tmp_path: Path) -> None:
    # It used to escape write() whole: the batch was refused, the journal entry never committed,
    # and the next start cut the other metric's file back, deleting points written after it.
    writer, run = writer_with_small_cache(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("")
    (run / "metrics").mkdir(exist_ok=True)
    (run / "metrics" / "b").symlink_to(outside)
    journal = WriteJournal.open(str(tmp_path / "journal"))
    failures = writer.write(one_point_each(["a", "b"], 0), journal=journal, seqs={"client": 1})
    assert [f.item for f in failures] == [f"metric 'b' of run {RUN_ID}"]
    assert writer.write(metrics("a", (1, 0.5, 1)), journal=journal, seqs={"client": 2}) == []
    writer.close()
    journal.close()
    WriteJournal.open(str(tmp_path / "journal")).close()  # a restart: recovery cuts uncommitted writes
    assert (run / "metrics" / "a").read_text() == "1 0.5 0\n1 0.5 1\n"
    assert outside.read_text() == ""


def test_a_metrics_folder_replaced_by_a_link_after_it_was_opened_is_never_followed(tmp_path: Path) -> None:
    writer, run = writer_with_small_cache(tmp_path)
    for i in range(40):  # m0 is closed for room; its folder stays open
        assert writer.write(metrics(f"m{i}", (1, 0.5, 0))) == []
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "metrics").rename(run / "metrics.moved")
    (run / "metrics").symlink_to(outside, target_is_directory=True)
    writer.write(metrics("m0", (2, 0.25, 1)))
    writer.close()
    assert list(outside.iterdir()) == []
    assert (run / "metrics.moved" / "m0").read_text() == "1 0.5 0\n2 0.25 1\n"


def test_a_metrics_folder_deleted_under_the_writer_is_made_again(tmp_path: Path) -> None:
    writer, run = writer_with_small_cache(tmp_path)
    for i in range(40):
        assert writer.write(metrics(f"m{i}", (1, 0.5, 0))) == []
    shutil.rmtree(run / "metrics")
    assert writer.write(metrics("m0", (2, 0.25, 1))) == []
    writer.close()
    assert (run / "metrics" / "m0").read_text() == "2 0.25 1\n"


def deleted_open_files(below: Path) -> list[str]:
    """What this process holds open below ``below`` that no longer has a name: a deleted file's
    blocks stay allocated."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # listdir's own descriptor, closed since
            continue
    return [link for link in links if link.startswith(str(below)) and link.endswith(" (deleted)")]


def test_a_metric_file_deleted_while_open_is_made_again_for_the_next_points(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(metrics("loss", (1, 0.5, 0))) == []
    (run / "metrics" / "loss").unlink()  # by hand, while the writer holds it open
    assert writer.write(metrics("loss", (2, 0.25, 1))) == []
    assert (run / "metrics" / "loss").read_text() == "2 0.25 1\n"
    assert deleted_open_files(tmp_path) == []
    writer.close()


def test_a_metrics_folder_deleted_while_its_files_are_open_is_made_again(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(one_point_each(["a", "b"], 0)) == []
    shutil.rmtree(run / "metrics")
    assert writer.write(one_point_each(["a", "b"], 1)) == []
    assert [(run / "metrics" / key).read_text() for key in "ab"] == ["1 0.5 1\n"] * 2
    assert deleted_open_files(tmp_path) == []
    writer.close()


def test_an_ended_run_gives_its_descriptors_back(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    assert writer.write(one_point_each(["a", "b", "c"], 0)) == []
    assert len(os.listdir("/proc/self/fd")) > before
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, START_MS + 9)])) == []
    assert len(os.listdir("/proc/self/fd")) == before
    shutil.rmtree(run)  # deleting a finished run frees its space at once
    assert deleted_open_files(tmp_path) == []
    writer.close()


def writer_with_a_cache(tmp_path: Path) -> tuple[StoreWriter, MetricFileCache, Path]:
    """A writer with one run, on a metric-file cache the test can look into; and the run's folder."""
    cache = MetricFileCache(max_open=64)
    writer = StoreWriter(tmp_path / "mlruns", metric_files=cache)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id)])) == []
    return writer, cache, tmp_path / "mlruns" / experiment_id / RUN_ID


def test_files_no_write_used_since_the_last_sweep_are_closed(tmp_path: Path) -> None:
    writer, cache, run = writer_with_a_cache(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    assert writer.write(one_point_each(["a", "b"], 0)) == []
    assert cache.close_idle() == 0  # both written since the writer started
    assert writer.write(one_point_each(["a"], 1)) == []
    assert cache.close_idle() == 1  # b: not written since the last sweep
    assert len(cache) == 1
    assert cache.close_idle() == 1  # then a, and the folder they are in
    assert len(os.listdir("/proc/self/fd")) == before
    assert writer.write(one_point_each(["a", "b"], 2)) == []  # reopened by name
    assert [(run / "metrics" / key).read_text() for key in "ab"] == ["1 0.5 0\n1 0.5 1\n1 0.5 2\n", "1 0.5 0\n1 0.5 2\n"]
    writer.close()


def test_partial_last_line_left_by_a_crash_is_cut_before_appending(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    (run / "metrics" / "loss").write_bytes(b"1 0.5 0\n17000")
    assert writer.write(metrics("loss", (2, 0.25, 1))) == []
    assert (run / "metrics" / "loss").read_bytes() == b"1 0.5 0\n2 0.25 1\n"


@pytest.mark.parametrize("plant", ["fifo", "link", "torn line"])
def test_a_closed_file_is_checked_when_it_is_opened_again(
    tmp_path: Path, plant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the open-file cap a file's lookup for the journal's size also vets it for the open that
    # follows; what is planted at a closed file's name is still refused, and a torn line still cut.
    writer, run = writer_with_small_cache(tmp_path)
    keys = [f"m{i}" for i in range(40)]  # room for 30: m0-m9 are closed when the next write starts
    assert writer.write(one_point_each(keys, 0)) == []
    checked: list[str] = []
    check = confinement_module.check_regular_or_missing

    def spy(path: str, folder_fd: int | None = None) -> None:
        checked.append(os.path.basename(path))
        check(path, folder_fd)

    monkeypatch.setattr(confinement_module, "check_regular_or_missing", spy)
    target, outside = run / "metrics" / "m0", tmp_path / "outside"
    outside.write_text("")
    if plant == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif plant == "link":
        target.unlink()
        target.symlink_to(outside)
    else:
        target.write_bytes(b"1 0.5 0\n17000")
    failures = writer.write(one_point_each(keys, 1))
    writer.close()
    assert all((run / "metrics" / key).read_text() == "1 0.5 0\n1 0.5 1\n" for key in keys[1:])
    assert outside.read_text() == ""
    # m1-m9 were found regular by the size lookup and opened without a second one.
    assert not set(checked) & {f"m{i}" for i in range(1, 10)}
    if plant == "torn line":
        assert failures == []
        assert target.read_text() == "1 0.5 0\n1 0.5 1\n"
        assert "m0" not in checked
    else:
        # Refused by the check before the open: the size lookup did not vouch for it.
        assert "m0" in checked
        assert [f.item for f in failures] == [f"metric 'm0' of run {RUN_ID}"]
        assert "expected a regular file" in failures[0].message


@pytest.mark.parametrize(("first", "second"), [("a", "a/b"), ("c/d", "c")])
def test_metric_key_clash_between_file_and_folder_is_a_failure(tmp_path: Path, first: str, second: str) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(metrics(first, (1, 1.0, 0))) == []
    failures = writer.write(metrics(second, (1, 2.0, 0)))
    assert [(f.origin, f.item) for f in failures] == [("o", f"metric {second!r} of run {RUN_ID}")]
    assert "cannot be both a file and a folder" in failures[0].message
    assert writer.write(metrics(first, (2, 3.0, 1))) == []  # the writer is still usable


def test_params_are_raw_utf8_and_immutable(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    batch = WriteBatch(params=[ParamWrite("o1", RUN_ID, "lr", "0.001"), ParamWrite("o2", RUN_ID, "nested/u", "héllo ✓\n")])
    assert writer.write(batch) == []
    assert (run / "params" / "lr").read_bytes() == b"0.001"
    assert (run / "params" / "nested" / "u").read_bytes() == "héllo ✓\n".encode()
    failures = writer.write(
        WriteBatch(params=[ParamWrite("o3", RUN_ID, "lr", "0.001"), ParamWrite("o4", RUN_ID, "lr", "0.1")])
    )
    assert [f.origin for f in failures] == ["o4"]
    assert failures[0].message == (
        f"Changing param values is not allowed. Param with key='lr' was already logged with "
        f"value='0.001' for run ID='{RUN_ID}'. Attempted logging new value '0.1'."
    )
    assert (run / "params" / "lr").read_bytes() == b"0.001"
    assert sorted(os.listdir(run)) == ["artifacts", "meta.yaml", "metrics", "params", "tags"]


def test_one_failing_item_does_not_stop_the_others(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    batch = WriteBatch(
        params=[ParamWrite("bad", RUN_ID, "../x", "1"), ParamWrite("good", RUN_ID, "p", "1")],
        tags=[TagWrite("missing-run", "f" * 32, "t", "v")],
        metrics=metrics("m", (1, 1.0, 0)).metrics,
    )
    failures = writer.write(batch)
    assert [f.origin for f in failures] == ["bad", "missing-run"]
    assert "not found" in failures[1].message
    assert (run / "params" / "p").read_bytes() == b"1"
    assert (run / "metrics" / "m").read_bytes() == b"1 1.0 0\n"
    assert not (tmp_path / run.parent.name / "x").exists()


def test_tag_set_delete_and_missing_delete(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", "v"), TagWrite("o", RUN_ID, "t", "w")])) == []
    assert (run / "tags" / "t").read_bytes() == b"w"
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", None)])) == []
    assert not (run / "tags" / "t").exists()
    failures = writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", None)]))
    assert failures[0].message == f"No tag with name: t in run with id {RUN_ID}"


def test_run_name_tag_rewrites_meta(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "mlflow.runName", "renamed")])) == []
    assert "run_name: renamed\n" in (run / "meta.yaml").read_text()
    assert (run / "tags" / "mlflow.runName").read_bytes() == b"renamed"


def test_termination_sets_status_and_end_time_and_later_writes_still_land(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 4, START_MS + 9)])) == []
    meta = (run / "meta.yaml").read_text()
    assert "status: 4\n" in meta and f"end_time: {START_MS + 9}\n" in meta and f"run_uuid: {RUN_ID}\n" in meta
    assert writer.write(metrics("late", (1, 1.0, 0))) == []  # MLflow allows writes to finished runs


@pytest.mark.parametrize(("before", "after"), [(4, 4), (5, 5), (1, 3)], ids=["failed", "killed", "running"])
def test_a_termination_that_keeps_failures_finishes_only_a_run_nobody_failed(tmp_path: Path, before: int, after: int) -> None:
    # The fluent API's default end of a run (its owner leaving the block cleanly) must not hide
    # that another rank or worker failed it; an explicit set_terminated still sets any status.
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, before, START_MS + 5)])) == []
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, START_MS + 9, keep_failure=True)])) == []
    assert f"status: {after}\n" in (run / "meta.yaml").read_text()
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, START_MS + 9)])) == []
    assert "status: 3\n" in (run / "meta.yaml").read_text()


def test_writes_to_a_deleted_run_fail(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    meta = run / "meta.yaml"
    meta.write_text(meta.read_text().replace("lifecycle_stage: active", "lifecycle_stage: deleted"))
    failures = writer.write(metrics("m", (1, 1.0, 0)))
    assert failures[0].message == f"The run {RUN_ID} must be in 'active' lifecycle_stage."
    assert not (run / "metrics" / "m").exists()


def test_artifacts_from_content_and_from_a_source_file(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path / "store")
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00weights")
    batch = WriteBatch(
        artifacts=[
            ArtifactWrite("o", RUN_ID, "notes/hello.txt", content=b"hello\n"),
            ArtifactWrite("o", RUN_ID, "model/model.bin", source_path=str(source)),
        ]
    )
    assert writer.write(batch) == []
    assert (run / "artifacts" / "notes" / "hello.txt").read_bytes() == b"hello\n"
    assert (run / "artifacts" / "model" / "model.bin").read_bytes() == b"\x00weights"
    assert sorted(os.listdir(run)) == ["artifacts", "meta.yaml", "metrics", "params", "tags"]


@pytest.mark.parametrize("path", ["../meta.yaml", "/tmp/evil", "a/../../x", "link/evil.txt", "link"])
def test_artifact_path_escapes_are_refused_and_write_nothing_outside(tmp_path: Path, path: str) -> None:
    writer, run = writer_with_run(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "artifacts" / "link").symlink_to(outside)
    before = (run / "meta.yaml").read_bytes()
    failures = writer.write(WriteBatch(artifacts=[ArtifactWrite("o", RUN_ID, path, content=b"x")]))
    if path == "link":  # replacing the link itself is confined: the link becomes a file
        assert failures == [] and not list(outside.iterdir())
        return
    assert len(failures) == 1 and "Invalid artifact path" in failures[0].message
    assert list(outside.iterdir()) == []
    assert (run / "meta.yaml").read_bytes() == before


def test_artifact_needs_exactly_one_source(tmp_path: Path) -> None:
    writer, _ = writer_with_run(tmp_path)
    failures = writer.write(WriteBatch(artifacts=[ArtifactWrite("o", RUN_ID, "a.txt")]))
    assert "exactly one of content and source_path, got neither" in failures[0].message


def test_repeated_tag_writes_in_one_batch_leave_the_last_value_and_write_once(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    tags = [TagWrite("o", RUN_ID, "epoch", str(i)) for i in range(1000)]
    tags += [TagWrite("o", RUN_ID, "gone", "x"), TagWrite("o", RUN_ID, "gone", None)]
    assert writer.write(WriteBatch(tags=tags)) == []
    assert (run / "tags" / "epoch").read_bytes() == b"999"
    # Deleting a tag set earlier in the same batch finds it, as it would one batch later.
    assert not (run / "tags" / "gone").exists()


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


def test_a_close_that_fails_in_the_idle_sweep_is_logged_and_the_sweep_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # close() can fail on NFS (a delayed write's EIO or EDQUOT); it ended the daemon's
    # housekeeping for good. Here a descriptor closed behind the cache's back fails with EBADF.
    writer, cache, _ = writer_with_a_cache(tmp_path)
    assert writer.write(one_point_each(["a", "b"], 0)) == []
    cache.close_idle()
    os.close(cache._fds[next(iter(cache._fds))])
    assert cache.close_idle() == 2 and len(cache) == 0
    assert "Closing" in caplog.text and "Bad file descriptor" in caplog.text
    writer.close()


# A file size limit stands in for a disk that refuses an append: os.write() then fails with EFBIG,
# root included, and the OSError names no file. It runs in a child, so the limit stays there.
CAPPED_APPEND = """
import resource, signal, sys
from trackd.store import MetricAppend, NewRun, StoreWriter, WriteBatch
run_id = sys.argv[2]
writer = StoreWriter(sys.argv[1])
assert writer.write(WriteBatch(new_runs=[NewRun("o", run_id, "0", "alice", "run-a", 1, {})])) == []
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
for failure in writer.write(WriteBatch(metrics={(run_id, "loss"): MetricAppend(run_id, "loss", [(1, 0.5, 0)] * 10, ["o"])})):
    print(failure.message)
"""


def test_a_refused_append_names_the_metric_file(tmp_path: Path) -> None:
    # It said "Cannot write metric 'loss' of run ...: File too large (None).": os.write() names no file.
    result = subprocess.run(
        [sys.executable, "-c", CAPPED_APPEND, str(tmp_path / "mlruns"), RUN_ID], capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "mlruns" / "0" / RUN_ID / "metrics" / "loss"
    assert result.stdout == f"Cannot write metric 'loss' of run {RUN_ID}: File too large ({str(path)!r}).\n"
    assert not path.exists()  # the partial line was cut, and the file left empty removed


def test_a_disk_error_without_a_file_names_the_item_instead_of_none() -> None:
    error = OSError(errno.ENOSPC, "No space left on device")
    refused = write_rules.refusal("The store at /s", error, f"metric 'loss' of run {RUN_ID}")
    assert str(refused) == f"The store at /s cannot be written (No space left on device): metric 'loss' of run {RUN_ID}."
    assert write_rules.os_error_message("tag 'a' of run r", OSError(errno.EPERM, "Operation not permitted")) == (
        "Cannot write tag 'a' of run r: Operation not permitted."
    )


def test_an_open_metric_file_whose_descriptor_went_bad_is_opened_again_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An fstat that failed (a stale NFS handle) failed the whole store's batch. Here the cache's
    # descriptor is closed behind its back (EBADF), as a stale one would fail.
    writer, cache, run = writer_with_a_cache(tmp_path)
    assert writer.write(metrics("loss", (1, 0.5, 0))) == []
    os.close(cache._fds[next(iter(cache._fds))])
    assert writer.write(metrics("loss", (2, 0.25, 1))) == []
    assert (run / "metrics" / "loss").read_text() == "1 0.5 0\n2 0.25 1\n"
    assert "could not be looked at through its descriptor (Bad file descriptor)" in caplog.text
    writer.close()


@pytest.mark.parametrize("location", ["rel/arts", "file:rel/arts"])
def test_a_relative_artifact_location_is_refused_by_the_writer(tmp_path: Path, location: str) -> None:
    # Resolved against the daemon's working folder it put a run's artifacts under / (the client
    # resolves it in its own folder first, as MLflow's FileStore does in-process).
    from trackd.errors import InvalidArgument

    writer = StoreWriter(tmp_path)
    with pytest.raises(InvalidArgument, match="a relative path; expected an absolute path or URI"):
        writer.create_experiment("e", artifact_location=location, now_ms=1)
    writer.close()
