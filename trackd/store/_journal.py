"""The write journal: how a daemon that dies mid-write still writes every batch exactly once.

Before the metric appends of a batch, the journal records each file's size (and for a file the
write makes, the temp file its first lines go to) and the sequence numbers the batch completes;
after the whole write, a commit line. The write links its new files into place last. On the next
start, ``WriteJournal.open`` looks at the last entry, if it is uncommitted: if any of its new files
is in place, the write had done everything else, so it puts the others in place and counts the
write as written. If none is, it cuts every file back to its recorded size (which also removes any
torn last line) and removes the temp files. A metric file MLflow may have listed is not removed: a
reader that listed it and opened it a moment later failed with FileNotFoundError. Except in two
cases, where the write is undone (its new files removed too) so that its clients resend it: a write
with an item that failed, marked ``undo`` (completed, it would count as written, and its clients
would never learn of the failure; undone, their resend reports it); and one whose new file cannot be
put in place now (another writer made that file meanwhile, its folder cannot be made: completed,
those lines were lost with a log line). It returns the sequence numbers of committed writes. (An
uncommitted entry with others after it is a write the disk refused, which the writer cut back
itself.) The daemon tells reconnecting clients those numbers, so they resend only what was never
written, and nothing twice.

A refused write the writer could not cut back (a store made read-only or unwritable: its cut is
owed, MetricFileCache.owed_cuts) holds its store's writes until the cut is made; every later
``begin`` line, and each snapshot, carries the cuts still owed, so the next start makes those of
the newest such line too. Those it cannot make either stay owed (``owed_cuts``, and the snapshot it
writes): the daemon's writer makes them before that store's next write. Each is carried under
``owed`` as path: [size, end, dev, ino, mtime_ns], and made only while the file is still the one
the failed write left (``_owed_cuts``); the path: size form under ``cuts`` (trackd before that)
tells nothing of the file, so those are not made, with a log line each, and a journal of a trackd
before owed cuts has neither key.

Lines are JSON, appended with one ``write()`` each. No fsync: this protects against the daemon
process dying (the page cache survives it), not against the machine losing power, which would
also take the clients' unsent events with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence

from .._words import counted
from ._format import orjson_line, remove_quietly
from ._metric_tails import truncate_files
from ._owed_cuts import OwedCut, make_owed_cut

_log = logging.getLogger("trackd.store")
# Past this size the journal is rewritten as one snapshot line of the sequence numbers.
DEFAULT_COMPACT_SIZE = 4 * 1024 * 1024
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class JournalUnreadable(OSError):
    """The journal exists but cannot be read back (EIO, EACCES): which writes to undo is unknown."""


class WriteJournal:
    """An append-only log of metric writes, their files' sizes before them, and their commits."""

    def __init__(
        self, path: str, fd: int, seqs: dict[str, int], *, compact_size: int, owed_cuts: dict[str, OwedCut] | None = None,
    ) -> None:
        self.path = path
        self._fd = fd
        self._next_id = 1
        self._size = os.fstat(fd).st_size
        self._compact_size = compact_size
        # The last line could be neither finished nor removed (see _append).
        self._torn = False
        #: Highest sequence number written, per client id, as recovered at open, least recently written first.
        self.recovered_seqs = seqs
        #: Metric files the start could not cut back, with the cuts they are owed (MetricFileCache.owe_cuts).
        self.owed_cuts = owed_cuts or {}

    @classmethod
    def open(cls, path: str, *, compact_size: int = DEFAULT_COMPACT_SIZE) -> WriteJournal:
        """Recover from the journal at ``path`` (undoing an interrupted write) and open it for appending.

        JournalUnreadable when it cannot be read; another OSError when it cannot be written.
        """
        seqs: dict[str, int] = {}
        try:
            with open(path, "rb") as journal:
                lines = journal.read().splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            # read() names no file, and a failed read was told as "cannot be written" at start.
            raise JournalUnreadable(exc.errno, exc.strerror, path) from exc
        pending: dict[int, list[tuple[str, int]]] = {}
        temps: dict[int, Mapping[str, str]] = {}
        notes: dict[int, Mapping[str, int]] = {}
        undo: set[int] = set()
        # The cuts owed as of the newest begin line or snapshot (each carries every cut owed then).
        owed: dict[str, OwedCut] = {}
        unknown: Mapping[str, int] = {}
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a line torn by the crash: its write never started
            if "snapshot" in entry or "begin" in entry:
                owed = {str(p): OwedCut(*map(int, cut)) for p, cut in entry.get("owed", {}).items()}
                unknown = entry.get("cuts", {})
            if "snapshot" in entry:
                seqs.update(entry["snapshot"])
            elif "begin" in entry:
                # One write at a time (the daemon's one writer thread): a write that began after
                # an uncommitted one means the daemon lived through that one, which the disk
                # refused and StoreWriter.write cut back itself. Only the last can be a write the
                # daemon died in; undoing an earlier one also cut every write committed to its
                # files since (a full disk that passed, then a daemon killed: acknowledged points lost).
                pending.clear()
                notes.clear()
                temps.clear()
                undo.clear()
                pending[entry["begin"]] = [(str(p), int(s)) for p, s in entry["files"]]
                notes[entry["begin"]] = entry.get("seqs", {})
                temps[entry["begin"]] = entry.get("temps", {})
            elif "undo" in entry:
                undo.add(entry["undo"])
            elif "commit" in entry:
                pending.pop(entry["commit"], None)
                for client_id, seq in notes.pop(entry["commit"], {}).items():
                    # To the newest end: the daemon forgets the oldest first (MAX_RETIRED_CLIENTS),
                    # and a client written since the snapshot kept its older place there.
                    seqs[client_id] = max(seqs.pop(client_id, 0), int(seq))
        for file, size in unknown.items():
            _log.warning(
                "Metric file %r was owed a cut back to %d bytes, recorded without what the file was then; it is "
                "not cut back, so as not to remove lines written to it since, and the points of the write "
                "that failed may appear in it twice.", file, size,
            )
        owed = _make_owed_cuts(owed)
        for entry_id, files in pending.items():
            new_files = temps.get(entry_id, {})
            if entry_id not in undo and any(os.path.lexists(file) for file in new_files):
                # The write places its new files last (StoreWriter.write): it had done everything
                # else, so it is completed, not undone. Undoing it removed files that MLflow
                # readers may have listed already, and they failed to open them (FileNotFoundError).
                unplaced = _place_staged(new_files)
                if not unplaced:
                    _log.warning(
                        "The daemon stopped as write %d put its new metric files in place; put the "
                        "others in place, and counted the write as written.", entry_id,
                    )
                    for client_id, seq in notes.get(entry_id, {}).items():
                        seqs[client_id] = max(seqs.pop(client_id, 0), int(seq))
                    continue
                # Counted as written with a file's lines not in place, the write lost them with a
                # line in this log only: its clients never resent them. Undone, they resend the
                # batches, and a file that cannot be written fails their resend, reported to them.
                _log.error(
                    "The daemon stopped as write %d put its new metric files in place, and %s; undoing "
                    "the write instead, so that its clients send its batches again.",
                    entry_id, "; ".join(unplaced),
                )
            else:
                _log.warning(
                    "The daemon stopped in the middle of write %d; cutting %s back to their "
                    "size before it, so its clients' resent batches are written once.",
                    entry_id, counted(len(files) - len(new_files), "metric file"),
                )
            owed.update(_undo(files, new_files))
        _write_snapshot(path, seqs, owed)
        fd = os.open(path, _FLAGS, 0o600)
        return cls(path, fd, seqs, compact_size=compact_size, owed_cuts=owed)

    def begin(
        self, files: Sequence[tuple[str, int]], seqs: Mapping[str, int], temps: Mapping[str, str] | None = None,
        cuts: Mapping[str, OwedCut] | None = None,
    ) -> int:
        """Record that ``files`` (path, size before) are about to be written, completing ``seqs``;
        ``temps``: of those the write makes, each one's temp file holding its first lines;
        ``cuts``: every metric file owed a cut back, as of now."""
        entry_id = self._next_id
        self._next_id += 1
        # "temps" is a key of its own: a daemon of an earlier trackd, started on this journal,
        # reads "files" as it always did (and undoes a new file as it did).
        entry = {"begin": entry_id, "files": files, "seqs": dict(seqs)}
        if temps:
            entry["temps"] = dict(temps)
        if cuts:
            entry["owed"] = _owed_entry(cuts)
        self._append(entry)
        return entry_id

    def keep_undoable(self, entry_id: int) -> None:
        """Record that write ``entry_id``, if it is never committed, is to be undone even once its
        new files are in place: some of its items failed, and only a resend reports them."""
        self._append({"undo": entry_id})

    def commit(self, entry_id: int) -> None:
        """Record that write ``entry_id`` is complete."""
        self._append({"commit": entry_id})

    def compact_if_large(self, seqs: Mapping[str, int], cuts: Mapping[str, OwedCut] | None = None) -> None:
        """Rewrite the journal as one snapshot of ``seqs`` (and the ``cuts`` owed) once it has grown past its bound."""
        if self._size < self._compact_size:
            return
        _write_snapshot(self.path, seqs, cuts)
        os.close(self._fd)
        self._fd = os.open(self.path, _FLAGS, 0o600)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _append(self, entry: object) -> None:
        try:
            # orjson: a write to 10,000 files begins with a line of 10,000 paths (~1 MB), which
            # json.dumps takes ~10 ms to make.
            line = orjson_line(entry)
        except TypeError:  # a path orjson cannot encode as UTF-8 (a lone surrogate): json escapes it
            line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        if self._torn:
            line = b"\n" + line
        written = 0
        try:
            # A disk that fills up mid-line makes write() return short, without an error: a line
            # left torn that way (a commit, say) was taken as written, and the next daemon's start
            # cut an acknowledged write back (its commit unreadable), or lost the next line glued to it.
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError as exc:
            if written:
                # Not a line at all: the part written goes, so the next line starts a line of its own
                # (or, if it cannot go, the next line starts with a newline that ends it).
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                except OSError:
                    self._torn = True
            # os.write() names no file; the daemon's log line should name the journal.
            raise OSError(exc.errno, exc.strerror, self.path) from exc
        self._torn = False
        self._size += len(line)


def _place_staged(new_files: Mapping[str, str]) -> list[str]:
    """Link each staged temp file whose file is not in place yet to its file, and remove the temps;
    if some cannot be placed, why (each a clause naming the file), and the temps are left to _undo."""
    unplaced = []
    for file, temp in new_files.items():
        try:
            if not os.path.lexists(temp):
                if not os.path.lexists(file):
                    # (The run's folder was deleted since, say: the resend says so to its client.)
                    unplaced.append(f"the staged lines of {file!r} are gone")
                continue  # placed: linked, then its temp removed
            if os.path.lexists(file):
                if not _same_file(temp, file):
                    # Another writer on the store made it meanwhile (another daemon, MLflow): the
                    # resend appends to it, as a live write does, once.
                    unplaced.append(f"{file!r} was made by another writer meanwhile")
                continue  # linked, its temp not removed yet
            # A nested key's folder ("group/loss") is made as its file is placed
            # (MetricFileCache.place): a write killed before that had not made it.
            os.makedirs(os.path.dirname(file), exist_ok=True)
            os.link(temp, file, follow_symlinks=False)
        except OSError as exc:
            unplaced.append(f"{file!r} could not be put in place: {exc}")
    if not unplaced:
        for temp in new_files.values():
            remove_quietly(temp)
    return unplaced


def _undo(files: Sequence[tuple[str, int]], new_files: Mapping[str, str]) -> dict[str, OwedCut]:
    """Cut an uncommitted write's ``files`` back to their sizes before it (its new files removed)
    and remove its temps; a new file another writer made meanwhile is left as it is. Returns the
    files that could not be cut back (owed)."""
    others = {
        file for file, temp in new_files.items()
        if os.path.lexists(file) and os.path.lexists(temp) and not _same_file(temp, file)
    }
    # In this order, so that a daemon killed meanwhile does it again at its next start: the temp
    # of another writer's file goes last, as only it tells that file from one the write placed.
    for file, temp in new_files.items():
        if file not in others:
            remove_quietly(temp)
    owed = truncate_files([(file, size) for file, size in files if file not in others])
    for file in others:
        remove_quietly(new_files[file])
    return owed


def _same_file(first: str, second: str) -> bool:
    try:
        one, two = os.stat(first, follow_symlinks=False), os.stat(second, follow_symlinks=False)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _make_owed_cuts(cuts: Mapping[str, OwedCut]) -> dict[str, OwedCut]:
    """Make the ``cuts`` a journal carried (each only if its file did not change since); those still owed."""
    owed = {}
    for file, cut in cuts.items():
        try:
            make_owed_cut(file, cut)
        except OSError as exc:
            _log.error("Could not cut metric file %r back to %d bytes: %s", file, cut.size, exc.strerror or exc)
            owed[file] = cut
    return owed


def _owed_entry(cuts: Mapping[str, OwedCut]) -> dict[str, list[int]]:
    """``cuts`` as a journal line carries them (under "owed"): path: [size, end, dev, ino, mtime_ns]."""
    return {file: list(cut) for file, cut in cuts.items()}


def _write_snapshot(path: str, seqs: Mapping[str, int], cuts: Mapping[str, OwedCut] | None = None) -> None:
    temp = f"{path}.tmp"
    snapshot: dict[str, object] = {"snapshot": dict(seqs)}
    if cuts:
        snapshot["owed"] = _owed_entry(cuts)
    try:
        with open(temp, "wb") as out:
            out.write(json.dumps(snapshot, separators=(",", ":")).encode() + b"\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)  # not left behind by a full disk, the journal itself unchanged
        raise
