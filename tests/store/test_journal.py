"""The write journal: an interrupted write is cut back at the next open, a committed one is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import inherited_env
from store_helpers import RUN_ID, START_MS, writer_with_run

from trackd.store import MetricAppend, WriteBatch, WriteJournal


def metric_file_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


def test_an_uncommitted_write_is_cut_back_and_a_committed_one_kept(tmp_path: Path) -> None:
    loss, acc = tmp_path / "loss", tmp_path / "acc"
    _append(loss, b"1 0.5 0\n")
    journal = WriteJournal.open(str(tmp_path / "j"))
    entry = journal.begin([(str(loss), loss.stat().st_size)], {"client-a": 3})
    _append(loss, b"2 0.25 1\n")
    journal.commit(entry)
    journal.begin([(str(loss), loss.stat().st_size), (str(acc), 0)], {"client-a": 4, "client-b": 1})
    _append(loss, b"3 0.125 2\n3 0.1")  # the daemon died here, mid-line
    _append(acc, b"3 0.9 2\n")
    journal.close()

    reopened = WriteJournal.open(str(tmp_path / "j"))
    assert loss.read_bytes() == b"1 0.5 0\n2 0.25 1\n"
    assert not acc.exists()  # the interrupted write created it: an empty metric file breaks MLflow
    assert reopened.recovered_seqs == {"client-a": 3}
    reopened.close()


def test_a_path_that_is_not_utf8_is_journaled_and_recovered(tmp_path: Path) -> None:
    # A store under a folder whose name is not UTF-8 (a Latin-1 "café"): the path holds a lone
    # surrogate, which orjson refuses, so the line is written by json instead.
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    metric = folder / "loss"
    _append(metric, b"1 0.5 0\n")
    journal = WriteJournal.open(str(tmp_path / "j"))
    journal.begin([(str(metric), metric.stat().st_size)], {"client-a": 1})
    _append(metric, b"2 0.25 1\n")
    journal.close()

    WriteJournal.open(str(tmp_path / "j")).close()
    assert metric.read_bytes() == b"1 0.5 0\n"


# A daemon's write, run in a child that SIGKILLs itself at the moment the write would commit: every
# part of the write is on disk, its commit line is not (the daemon died between the two).
_KILLED_AT_COMMIT = """
import os, signal, sys
from trackd.store import MetricAppend, StoreWriter, WriteBatch, WriteJournal

class KilledAtCommit(WriteJournal):
    def begin(self, files, seqs, temps=None, cuts=None):
        entry = super().begin(files, seqs, temps, cuts)
        if os.environ.get("PLANT_LINK_TO"):  # a user plants a link at new file acc's path mid-write
            os.symlink(os.environ["PLANT_LINK_TO"], next(path for path in temps if path.endswith("/acc")))
        return entry

    def commit(self, entry_id: int) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

root, journal_path, run_id, *failing = sys.argv[1:]
points = [(1_700_000_000_100, 0.25, 1), (1_700_000_000_101, 0.125, 2)]
batch = WriteBatch(metrics={
    (run_id, "loss"): MetricAppend(run_id, "loss", points, ["client-1"]),
    (run_id, "acc"): MetricAppend(run_id, "acc", points, ["client-1"]),
    # With an argument, an item that fails: a run the store does not have.
    **{(bad, "x"): MetricAppend(bad, "x", points, ["client-1"]) for bad in failing},
})
StoreWriter(root).write(batch, journal=KilledAtCommit.open(journal_path), seqs={"client-1": 7})
"""


def _write_killed_at_commit(root: Path, journal_path: Path, *failing_run: str, env: dict[str, str] | None = None) -> Path:
    """A store whose run has a committed "loss" (client-1's batch 6), and a journal whose last
    write (batch 7: "loss" appended, "acc" created) was killed at its commit; the run's folder."""
    writer, run = writer_with_run(root)
    journal = WriteJournal.open(str(journal_path))
    first = WriteBatch(metrics={(RUN_ID, "loss"): MetricAppend(RUN_ID, "loss", [(START_MS, 0.5, 0)], ["client-1"])})
    assert writer.write(first, journal=journal, seqs={"client-1": 6}) == []
    journal.close()
    writer.close()
    args = [str(root), str(journal_path), RUN_ID, *failing_run]
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AT_COMMIT, *args], capture_output=True, text=True, env={**inherited_env(), **(env or {})}
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    return run


def test_recovery_keeps_the_new_metric_files_an_mlflow_reader_listed(tmp_path: Path) -> None:
    # This used to fail with FileNotFoundError: the next daemon's start removed "acc", which the
    # killed write had created, and an MLflow get_run that had listed metrics/ just before failed
    # to open it (found by a chaos run of MLflow readers against a daemon killed at random).
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    root, journal_path = tmp_path / "mlruns", tmp_path / "journal"
    run = _write_killed_at_commit(root, journal_path)

    store = MlflowClient(tracking_uri=str(root))._tracking_client.store
    run_info = store._get_run_info(RUN_ID)
    # MLflow's get_run, search_runs and get_metric_history list metrics/ first, then open each file.
    folder, listed = store._get_run_files(run_info, "metric")
    recovered = WriteJournal.open(str(journal_path))  # the next daemon starts meanwhile
    recovered.close()
    read = {name: store._get_metric_from_file(folder, name, RUN_ID, run.parent.name).value for name in listed}

    assert read == {"loss": 0.125, "acc": 0.125}
    # The write was complete but for its commit: it counts as written, so the client does not
    # resend it and each point is in the store once.
    assert recovered.recovered_seqs == {"client-1": 7}
    history = MlflowClient(tracking_uri=str(root)).get_metric_history(RUN_ID, "acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.125)]
    assert len(metric_file_lines(run / "metrics" / "loss")) == 3
    assert not [name for name in os.listdir(run) if name.startswith(".")]  # no temp file left


def test_a_killed_write_with_a_failed_item_is_undone_so_its_resend_reports_the_failure(tmp_path: Path) -> None:
    # Completed at the next start, the write would count as written: its client would not resend
    # it, and would never learn that the item failed.
    root, journal_path = tmp_path / "mlruns", tmp_path / "journal"
    run = _write_killed_at_commit(root, journal_path, "f" * 32)

    recovered = WriteJournal.open(str(journal_path))
    recovered.close()
    assert recovered.recovered_seqs == {"client-1": 6}
    assert metric_file_lines(run / "metrics" / "loss") == [b"%d 0.5 0" % START_MS]
    assert sorted(os.listdir(run / "metrics")) == ["loss"]
    assert not [name for name in os.listdir(run) if name.startswith(".")]


def test_a_write_killed_before_its_new_files_appeared_is_cut_back_and_leaves_no_temp(tmp_path: Path) -> None:
    loss, acc = tmp_path / "metrics" / "loss", tmp_path / "metrics" / "acc"
    loss.parent.mkdir()
    _append(loss, b"1 0.5 0\n")
    temp = tmp_path / ".trackd-0123456789abcdef.tmp"
    journal = WriteJournal.open(str(tmp_path / "j"))
    journal.begin([(str(loss), loss.stat().st_size), (str(acc), 0)], {"client-a": 4}, {str(acc): str(temp)})
    temp.write_bytes(b"2 0.9 1\n")  # acc's first lines, staged: the write had not put it in place
    _append(loss, b"2 0.25 1\n2 0.1")  # the daemon died here, mid-line
    journal.close()

    reopened = WriteJournal.open(str(tmp_path / "j"))
    assert loss.read_bytes() == b"1 0.5 0\n"
    assert not acc.exists() and not temp.exists()
    assert reopened.recovered_seqs == {}
    reopened.close()


def _killed_while_placing(folder: Path) -> tuple[Path, Path, Path]:
    """A journal (``folder``/j) whose last write, client-a's batch 4, was killed after placing new
    file "acc" and before placing new file "group/loss" (whose folder it had not made); (acc,
    group/loss, group/loss's staged temp)."""
    metrics = folder / "metrics"
    metrics.mkdir()
    acc, nested = metrics / "acc", metrics / "group" / "loss"
    acc_temp, nested_temp = folder / ".trackd-00000000000000aa.tmp", folder / ".trackd-00000000000000bb.tmp"
    journal = WriteJournal.open(str(folder / "j"))
    journal.begin([(str(acc), 0), (str(nested), 0)], {"client-a": 4}, {str(acc): str(acc_temp), str(nested): str(nested_temp)})
    acc.write_bytes(b"3 0.9 2\n")  # placed (its temp linked, then removed)
    nested_temp.write_bytes(b"3 0.25 2\n")  # staged, not placed yet: the daemon died here
    journal.close()
    return acc, nested, nested_temp


def test_recovery_places_a_new_metric_file_of_a_nested_key_whose_folder_the_write_had_not_made(tmp_path: Path) -> None:
    # This used to lose "group/loss" with only a line in the daemon's log ("Could not put metric
    # file ... in place: No such file or directory"), though the write counted as written and its
    # client never resent it: the write makes a nested key's folder only as it places the file,
    # and the daemon was killed after placing "acc" and before that.
    acc, nested, nested_temp = _killed_while_placing(tmp_path)

    reopened = WriteJournal.open(str(tmp_path / "j"))
    reopened.close()
    assert reopened.recovered_seqs == {"client-a": 4}
    assert nested.read_bytes() == b"3 0.25 2\n"
    assert acc.read_bytes() == b"3 0.9 2\n"
    assert not nested_temp.exists()


@pytest.mark.parametrize("obstacle", ["the file, made by another writer", "a file where the key's folder goes"])
def test_a_killed_write_whose_new_file_cannot_be_placed_at_the_next_start_is_undone_not_lost(
    tmp_path: Path, obstacle: str
) -> None:
    # This used to count the write as written with "group/loss"'s staged lines removed, said only in
    # the daemon's log ("Could not put metric file ... in place"): its client never resent them.
    acc, nested, nested_temp = _killed_while_placing(tmp_path)
    # Then, before the next daemon starts, another writer (MLflow, say) logs to the same run:
    other = nested if obstacle.startswith("the file") else nested.parent
    other.parent.mkdir(exist_ok=True)
    other.write_bytes(b"1 7.0 0\n")

    reopened = WriteJournal.open(str(tmp_path / "j"))
    reopened.close()
    assert reopened.recovered_seqs == {}  # not written: client-a resends batch 4
    assert not acc.exists()  # undone, so the resend writes it once
    assert other.read_bytes() == b"1 7.0 0\n"  # the other writer's file is left as it is
    assert not nested_temp.exists()


def test_a_killed_write_whose_new_file_failed_as_it_was_placed_is_undone_so_its_resend_reports_it(tmp_path: Path) -> None:
    # This used to complete the write at the next start: a link planted at "acc" after the write
    # had found it new failed its placing (refused, its lines not written), the daemon was killed
    # before its commit, and the write counted as written: its client never heard of the failure.
    root, journal_path, elsewhere = tmp_path / "mlruns", tmp_path / "journal", tmp_path / "elsewhere"
    elsewhere.write_bytes(b"not a metric file\n")
    run = _write_killed_at_commit(root, journal_path, env={"PLANT_LINK_TO": str(elsewhere)})

    recovered = WriteJournal.open(str(journal_path))
    recovered.close()
    assert recovered.recovered_seqs == {"client-1": 6}  # batch 7 not written: resent, its failure reported
    assert metric_file_lines(run / "metrics" / "loss") == [b"%d 0.5 0" % START_MS]
    assert (run / "metrics" / "acc").is_symlink() and elsewhere.read_bytes() == b"not a metric file\n"
