"""StoreWriter's metric files: MLflow's exact lines, appended whole, with open files bounded and files changed under the writer never followed."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trackd.store import _confinement as confinement_module
from trackd.store import _run_handles as run_handles_module
from trackd.store import _write_rules as write_rules
from trackd.store import MetricAppend, MetricFileCache, StoreWriter, Termination, WriteBatch, WriteJournal

from store_helpers import RUN_ID, START_MS, metrics, new_run, writer_with_run


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
    keys = [f"m{i}" for i in range(40)]  # room for 28: m28-m39 are closed, the write that made them
    # found the cache full of files it was writing (MetricFileCache._open)
    assert writer.write(one_point_each(keys, 0)) == []
    checked: list[str] = []
    check = confinement_module.check_regular_or_missing

    def spy(path: str, folder_fd: int | None = None) -> None:
        checked.append(os.path.basename(path))
        check(path, folder_fd)

    monkeypatch.setattr(confinement_module, "check_regular_or_missing", spy)
    target, outside = run / "metrics" / "m30", tmp_path / "outside"
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
    assert all((run / "metrics" / key).read_text() == "1 0.5 0\n1 0.5 1\n" for key in keys if key != "m30")
    assert outside.read_text() == ""
    # m31-m39 were found regular by the size lookup and opened without a second one.
    assert not set(checked) & {f"m{i}" for i in range(31, 40)}
    if plant == "torn line":
        assert failures == []
        assert target.read_text() == "1 0.5 0\n1 0.5 1\n"
        assert "m30" not in checked
    else:
        # Refused by the check before the open: the size lookup did not vouch for it.
        assert "m30" in checked
        assert [f.item for f in failures] == [f"metric 'm30' of run {RUN_ID}"]
        assert "expected a regular file" in failures[0].message


@pytest.mark.parametrize(("first", "second"), [("a", "a/b"), ("c/d", "c")])
def test_metric_key_clash_between_file_and_folder_is_a_failure(tmp_path: Path, first: str, second: str) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(metrics(first, (1, 1.0, 0))) == []
    failures = writer.write(metrics(second, (1, 2.0, 0)))
    assert [(f.origin, f.item) for f in failures] == [("o", f"metric {second!r} of run {RUN_ID}")]
    assert "cannot be both a file and a folder" in failures[0].message
    assert writer.write(metrics(first, (2, 3.0, 1))) == []  # the writer is still usable


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
