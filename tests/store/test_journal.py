"""The write journal: an interrupted write is cut back at the next open, a committed one is kept."""

from __future__ import annotations

import os
from pathlib import Path

from trackd.store import WriteJournal


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
