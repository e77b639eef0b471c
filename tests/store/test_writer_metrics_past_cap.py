"""StoreWriter past its open-file cap: the files it holds stay held from write to write, and a file it
closed is looked at as before when it is opened again, whatever was done to it in between."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trackd.store import MetricAppend, StoreWriter, WriteBatch, WriteJournal

from store_helpers import RUN_ID, START_MS, new_run

KEYS = [f"m{i}" for i in range(40)]  # room for 28 with max_open_files=32 (28 files, 4 folders)


def writer_with_small_cache(tmp_path: Path) -> tuple[StoreWriter, Path]:
    writer = StoreWriter(tmp_path / "mlruns", max_open_files=32)
    experiment_id = writer.create_experiment("exp", now_ms=START_MS)
    assert writer.write(WriteBatch(new_runs=[new_run(experiment_id)])) == []
    return writer, tmp_path / "mlruns" / experiment_id / RUN_ID


def one_point_each(step: int) -> WriteBatch:
    return WriteBatch(metrics={(RUN_ID, k): MetricAppend(RUN_ID, k, [(1, 0.5, step)], ["o"]) for k in KEYS})


def held_metric_files(run: Path) -> dict[int, str]:
    """This process's descriptors of the run's metric files: descriptor -> key."""
    prefix = os.path.realpath(run / "metrics") + "/"
    held = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(prefix):
            held[int(name)] = target[len(prefix):]
    return held


def test_a_write_past_the_cap_finds_the_files_it_held_still_open(tmp_path: Path) -> None:
    # Each write appends to all 40 files in turn. Closing the least recently used file to open the
    # next closed every file just before the write reached it, so every write reopened all 40; the
    # files held are kept instead, and only the 12 others are opened, written and closed.
    writer, run = writer_with_small_cache(tmp_path)
    assert writer.write(one_point_each(0)) == []
    held = held_metric_files(run)
    assert len(held) == 28
    for step in (1, 2):
        assert writer.write(one_point_each(step)) == []
        assert held_metric_files(run) == held  # the same descriptors: none closed and opened again
    writer.close()
    assert held_metric_files(run) == {}
    assert all((run / "metrics" / key).read_text() == "1 0.5 0\n1 0.5 1\n1 0.5 2\n" for key in KEYS)


# What someone else did to a file between two writes, and the file the second write leaves.
BEFORE = b"1 0.5 0\n1 0.5 1\n"
CHANGES: dict[str, tuple[str, bytes, str]] = {
    "appended a line": ("append", b"7 7.0 7\n", "1 0.5 0\n1 0.5 1\n7 7.0 7\n1 0.5 2\n"),
    "appended a torn line": ("append", b"7 7.0 7\n170", "1 0.5 0\n1 0.5 1\n7 7.0 7\n1 0.5 2\n"),
    "truncated mid-line": ("truncate", b"1 0.5 0\n1 0.", "1 0.5 0\n1 0.5 2\n"),
    # The size the writer's own last write left, the same inode, and a torn line: only reading the
    # file's end tells (a reopen that trusted a remembered size would append to "17").
    "rewritten in place, torn": ("rewrite", b"1 0.5 0\n1 0.5 17", "1 0.5 0\n1 0.5 2\n"),
    "replaced, torn, same size": ("replace", b"9 9.0 9\n9 9.0 99", "9 9.0 9\n1 0.5 2\n"),
    "replaced, whole lines": ("replace", b"9 9.0 9\n", "9 9.0 9\n1 0.5 2\n"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_file_closed_past_the_cap_is_repaired_when_opened_again(tmp_path: Path, change: str) -> None:
    # A file the writer opened, appended to and closed (past the cap) and then changed behind its
    # back is looked at again when it is next opened: a torn last line is cut, a line someone else
    # wrote is kept, and the write's own line is appended once.
    writer, run = writer_with_small_cache(tmp_path)
    journal = WriteJournal.open(str(tmp_path / "journal"))
    for step in (0, 1):  # made, then appended to: reopened, written and closed
        assert writer.write(one_point_each(step), journal=journal, seqs={"o": step}) == []
    closed = sorted(set(KEYS) - set(held_metric_files(run).values()))
    assert len(closed) == 12
    target = run / "metrics" / closed[0]
    how, what, expected = CHANGES[change]
    assert target.read_bytes() == BEFORE
    if how == "append":
        with open(target, "ab") as file:
            file.write(what)
    elif how == "truncate":
        assert BEFORE.startswith(what)
        os.truncate(target, len(what))
    elif how == "rewrite":
        assert len(what) == len(BEFORE)
        with open(target, "r+b") as file:  # in place: the same inode and size
            file.write(what)
    else:
        replacement = tmp_path / "replacement"
        replacement.write_bytes(what)
        os.replace(replacement, target)
    assert writer.write(one_point_each(2), journal=journal, seqs={"o": 2}) == []
    writer.close()
    assert target.read_text() == expected
    others = [run / "metrics" / key for key in KEYS if key != closed[0]]
    assert all(path.read_text() == "1 0.5 0\n1 0.5 1\n1 0.5 2\n" for path in others)
