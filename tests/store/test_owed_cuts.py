"""A cut a failed write owes (its store read-only) is made only if nobody wrote to the file since.

An owed cut was a path and a size: the next write to the store, or the next daemon start however
long after, cut whatever was appended since (MLflow itself, another node's daemon on the store once
writable), removed a file made since when the size was 0, owed a cut for every file of the batch
(also those the write never appended to), and a client reaching the store through a linked path
was not held by it, so its acknowledged points were cut off later.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from helpers import read_only

from trackd.store import MetricFileCache, WriteJournal

BEFORE = b"1 0.5 0\n"  # what the files held before the failed write
TAIL = b"2 0.4 1\n"  # what the failed write appended
OTHERS = b"3 0.3 2\n"  # what another writer appended since


class FailedWrite:
    """A store whose write appended to ``loss`` and made ``new``, never touched ``acc``, and failed
    with its files closed; its rollback done on the store made read-only, so the cuts are owed."""

    def __init__(self, store: Path, folder: Path | None = None) -> None:
        # ``folder``: where the write reached the run's metrics (a linked path to them, say).
        metrics = store / "0" / "run" / "metrics"
        metrics.mkdir(parents=True)
        self.store = store
        folder = folder or metrics
        self.loss, self.acc, self.new = folder / "loss", folder / "acc", folder / "new"
        self.loss.write_bytes(BEFORE + TAIL)
        self.acc.write_bytes(BEFORE)
        self.new.write_bytes(TAIL)
        self.cache = MetricFileCache(64)
        with read_only(store):
            self.cache.rollback([(str(self.loss), len(BEFORE)), (str(self.acc), len(BEFORE)), (str(self.new), 0)])
            self.owed = self.cache.owed_cuts

    def real(self, path: Path) -> str:
        return os.path.join(os.path.realpath(path.parent), path.name)


def test_only_files_with_a_tail_are_owed_and_their_cuts_are_made_once_the_store_is_writable(tmp_path: Path) -> None:
    write = FailedWrite(tmp_path / "mlruns")
    # acc was never appended to: nothing to cut (opening it to cut it was refused, so it was owed).
    assert sorted(write.owed) == sorted([write.real(write.loss), write.real(write.new)])
    write.cache.finish_cuts(str(write.store))
    assert write.loss.read_bytes() == BEFORE
    assert write.acc.read_bytes() == BEFORE
    assert not write.new.exists()
    assert write.cache.owed_cuts == {}


def test_a_file_appended_to_or_made_again_since_is_not_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write = FailedWrite(tmp_path / "mlruns")
    with open(write.loss, "ab") as out:  # another writer, once the store took writes again
        out.write(OTHERS)
    # Made again by another writer: a file of its own, the same size as the one owed its removal.
    (write.new.parent / "made").write_bytes(OTHERS)
    os.replace(write.new.parent / "made", write.new)
    with caplog.at_level(logging.WARNING, logger="trackd.store"):
        write.cache.finish_cuts(str(write.store))
    assert write.loss.read_bytes() == BEFORE + TAIL + OTHERS
    assert write.new.read_bytes() == OTHERS
    assert write.cache.owed_cuts == {}  # not owed any more: the store's writes go on
    assert "is 24 bytes long, not the 16 the failed write left" in caplog.text
    assert "was replaced by another file" in caplog.text
    assert "not cut back, so as not to remove lines written to it since" in caplog.text


def test_a_store_reached_through_a_linked_path_is_held_by_the_cuts_it_owes(tmp_path: Path) -> None:
    # The write reached the store through a link to its run's metrics; a writer of the store by
    # its own path must wait for the cut too, or it appends past the tail that is cut off later.
    store = tmp_path / "mlruns"
    (tmp_path / "linked").symlink_to(store / "0" / "run" / "metrics")
    write = FailedWrite(store, tmp_path / "linked")
    with read_only(store), pytest.raises(OSError):
        write.cache.finish_cuts(str(store))
    write.cache.finish_cuts(str(store))
    assert write.loss.read_bytes() == BEFORE
    assert not write.new.exists()


@pytest.mark.parametrize("since", ["nothing", "appended", "made-again"])
def test_a_journal_carries_the_cuts_owed_and_the_next_start_makes_only_those_of_unchanged_files(tmp_path: Path, since: str) -> None:
    write = FailedWrite(tmp_path / "mlruns")
    journal = WriteJournal.open(str(tmp_path / "j"))
    journal.begin([], {}, cuts=write.owed)  # the daemon was killed with the cuts owed
    journal.close()
    if since == "appended":
        with open(write.loss, "ab") as out:
            out.write(OTHERS)
    elif since == "made-again":
        write.new.unlink()
        write.new.write_bytes(OTHERS)
    WriteJournal.open(str(tmp_path / "j")).close()
    assert write.loss.read_bytes() == BEFORE + (TAIL + OTHERS if since == "appended" else b"")
    assert write.new.exists() == (since == "made-again")
    assert write.acc.read_bytes() == BEFORE


def test_cuts_a_journal_recorded_as_path_and_size_only_are_not_made(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The form of trackd 3fa67c5: nothing tells whether the file is still the one left.
    loss, acc = tmp_path / "loss", tmp_path / "acc"
    loss.write_bytes(BEFORE + TAIL + OTHERS)
    acc.write_bytes(OTHERS)
    (tmp_path / "j").write_text(json.dumps({"begin": 1, "files": [], "seqs": {}, "cuts": {str(loss): 8, str(acc): 0}}) + "\n")
    with caplog.at_level(logging.WARNING, logger="trackd.store"):
        journal = WriteJournal.open(str(tmp_path / "j"))
    assert journal.owed_cuts == {}
    journal.close()
    assert loss.read_bytes() == BEFORE + TAIL + OTHERS
    assert acc.read_bytes() == OTHERS
    assert "recorded without what the file was then" in caplog.text
