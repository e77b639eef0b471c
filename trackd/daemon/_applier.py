"""The applier: turns received records into store writes, on the daemon's one writer thread.

Grouping happens here, off the event loop: all points for one metric file in a write go out as
one ``write()``, whichever clients sent them. Records are checked against MLflow's rules (the
store's validators) before anything is written; a refused record becomes a failure for the client
that sent it, never an exception that stops the write. A batch sending an artifact by path waits,
with its client's later batches, until the daemon has copied the file into the store (_copies.py):
the write then only renames the copy into place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .._words import counted
from ..errors import InvalidArgument, StoreError, StoreUnavailable
from ..protocol import (
    ARTIFACT, CREATE_RUN, DELETE_TAG, METRIC, METRIC_SERIES, PARAM, SET_TERMINATED, TAG, RecordKind, create_run_owner,
    termination_shared,
)
from ..store import (
    ArtifactWrite,
    MetricAppend,
    MetricFileCache,
    NewRun,
    ParamWrite,
    RunCounts,
    StoreWriter,
    TagWrite,
    Termination,
    WriteBatch,
    WriteJournal,
    validate_artifact_path,
    validate_key,
    validate_param_value,
    validate_written_run_id,
    validate_run_status,
    validate_tag_value,
)

if TYPE_CHECKING:
    from ._batcher import PendingBatch
    from ._state import Session

Origin = tuple["Session", int]
# The pids of the live processes other than client ``client_id`` that own run ``run_id`` of the
# store at ``root`` (Wills.other_owners): called on the writer thread.
OwnersOf = Callable[[str, str, str], list[int]]

logger = logging.getLogger("trackd.daemon")


# Keys and run ids already checked against MLflow's rules; cleared when it grows past this, so a
# client inventing keys cannot grow it without bound.
MAX_CACHED_NAMES = 100_000
# A store no write or request used for this many idle-file sweeps (close_idle_files, every 10 to
# 20 s) loses its StoreWriter (made again at its next use, from the files). A test suite gives
# each test a store of its own: 2,000 of them, each deleted after its test, kept ~9 MB of writers
# in a daemon that never forgot one.
IDLE_STORE_SWEEPS = 30


@dataclass(frozen=True, slots=True)
class Failure:
    """An item of batch ``seq`` from ``session`` that was not written."""

    session: Session
    seq: int
    item: str
    message: str
    # Events the item held: a refused metric series loses all its points.
    events: int = 1


@dataclass(slots=True)
class ApplyResult:
    """What one write did: records handled, metric points written, and every failure."""

    records: int = 0
    metric_points: int = 0
    failures: list[Failure] = field(default_factory=list)
    # Failures of the store itself (disk full, permissions), by kind, for status and the log.
    store_errors: list[str] = field(default_factory=list)
    # Batches not written because their store refused writes for now (disk full...): written again later.
    retry: list[PendingBatch] = field(default_factory=list)
    # Why, by store root: these are not in store_errors (the daemon logs them per outage).
    refused: dict[str, str] = field(default_factory=dict)
    # Batches not written because an artifact they send by path is not copied yet, with their
    # clients' later batches: written once the daemon has copied it (daemon/_copies.py).
    copies: list[PendingBatch] = field(default_factory=list)


class Applier:
    """Owns one StoreWriter per store root; every method runs on the writer thread."""

    def __init__(self, *, max_open_files: int, journal: WriteJournal | None = None) -> None:
        # One cache of open metric files for every store: the cap guards the daemon's file limit,
        # which two stores of 10,000 files each, with a cap apiece, ran out of (EMFILE on every write).
        self._metric_files = MetricFileCache(max_open_files)
        self._journal = journal
        if journal is not None:
            # Cuts the journal could not make at start (a store still read-only): made before
            # their store's next write, which waits for them.
            self._metric_files.owe_cuts(journal.owed_cuts)
        self._writers: dict[str, StoreWriter] = {}
        # The runs every writer made, ended and resumed since the daemon started (status: runs_*):
        # kept here, as a store's writer is forgotten when idle. Read by status on the event loop
        # while the writer thread counts: plain ints, and a dict whose keys never change.
        self.run_counts = RunCounts()
        # Sweeps each store's writer has gone unused (see IDLE_STORE_SWEEPS); 0 once used again.
        self._idle_sweeps: dict[str, int] = {}
        # Each checked name as itself: its first copy, which the write's files are keyed by, so that
        # a run's remembered metric files (RunHandle.metric_paths, one per file) share their key's
        # one string instead of each keeping the copy its first record was decoded into (~64
        # bytes a file: 6 MB of 100,000 files of 100 keys).
        self._good_keys: dict[str, str] = {}
        self._good_run_ids: dict[str, str] = {}
        # Who else owns a run, for shared ends (set by the server; None: nobody, in tests of the applier alone).
        self.other_owners: OwnersOf | None = None

    def writer(self, root: str, artifact_root: str | None = None) -> StoreWriter:
        """The writer for ``root``, opened (and the store created) on first use.

        ``artifact_root`` (a session's, checked at its Hello) is where the experiments it makes
        now go, experiment 0 of a store made (again) included: each client's own form, as each
        MLflow process's FileStore uses its own tracking URI. None keeps the writer's.
        """
        writer = self._writers.get(root)
        if writer is None:
            writer = self._writers[root] = StoreWriter(
                root, metric_files=self._metric_files, artifact_root=artifact_root, run_counts=self.run_counts
            )
        elif artifact_root is not None:
            writer.artifact_root = artifact_root
        self._idle_sweeps[root] = 0
        return writer

    @property
    def stores(self) -> list[str]:
        """The store roots that have a writer now."""
        return list(self._writers)

    def get_experiment(self, root: str, name: str, *, create: bool, artifact_root: str | None = None) -> str | None:
        """The id of the active experiment ``name``, creating it first when asked."""
        writer = self.writer(root, artifact_root)
        experiment_id = writer.get_experiment_id_by_name(name)
        if experiment_id is None and create:
            experiment_id = writer.create_experiment(name, now_ms=_now_ms())
        return experiment_id

    def create_experiment(
        self, root: str, name: str, artifact_location: str | None, tags: Mapping[str, str],
        artifact_root: str | None = None,
    ) -> str:
        """Create experiment ``name``; raises ExperimentExists or InvalidArgument."""
        return self.writer(root, artifact_root).create_experiment(
            name, artifact_location=artifact_location, tags=tags, now_ms=_now_ms()
        )

    def apply(self, pending: list[PendingBatch], copying: dict[Session, int] | None = None) -> ApplyResult:
        """Write every pending batch, grouped per store root, and report what failed.

        A batch sending an artifact by path that is not copied yet is not written, nor are its
        client's later batches: they go to ``ApplyResult.copies``, and ``copying`` (kept across
        the turns of a write) maps each such client to the first of its batches held back.
        """
        result = ApplyResult()
        copying = {} if copying is None else copying
        prepared = self._prepare(pending, copying)
        if prepared is None:  # batches to copy for first: translate the others again, without them
            prepared = self._prepare(pending, copying)
            assert prepared is not None, "a second pass found no more batches to copy for"
        batches, items, refused = prepared
        if copying:
            result.copies = [item for item in pending if item.seq >= copying.get(item.session, item.seq + 1)]
        for root, batch in batches.items():
            # The journal records, with the write, the highest batch of each client it completes.
            seqs: dict[str, int] = {}
            for item in items[root]:
                seqs[item.session.client_id] = max(seqs.get(item.session.client_id, 0), item.seq)
            try:
                # A store made (again) by this write gets experiment 0 in its first client's form.
                writer = self.writer(root, items[root][0].session.artifact_root)
                failures = writer.write(batch, journal=self._journal, seqs=seqs)
            except StoreUnavailable as exc:
                # Nothing of this root's batches stays half-written; they wait and go again.
                result.refused[root] = str(exc)
                result.retry.extend(items[root])
                continue
            except (OSError, StoreError) as exc:
                # The store as a whole failed (its root vanished, ...): every item of this root is
                # reported, and the daemon carries on with other roots.
                message = f"The store at {root} could not be written: {exc}."
                result.store_errors.append(message)
                result.failures.extend(Failure(item.session, item.seq, "batch", message, item.events) for item in items[root])
                result.records += sum(item.events for item in items[root])  # received, none written
                _discard_copies(items[root])
                continue
            _discard_copies(items[root])
            result.failures.extend(refused[root])
            for failure in failures:
                session, seq = cast(Origin, failure.origin)
                result.failures.append(Failure(session, seq, failure.item, failure.message, failure.events))
            result.metric_points += sum(len(m.points) for m in batch.metrics.values())
            result.records += sum(item.events for item in items[root])
        return result

    def _prepare(
        self, pending: list[PendingBatch], copying: dict[Session, int]
    ) -> tuple[dict[str, WriteBatch], dict[str, list[PendingBatch]], dict[str, list[Failure]]] | None:
        """The write of each root, the batches in it and the records refused before it; None when
        a batch turned out to need copies first (it and its client's later batches are then in ``copying``)."""
        batches: dict[str, WriteBatch] = {}
        items: dict[str, list[PendingBatch]] = {}
        # Records refused before the write, per root: reported once the root's write is done; a
        # retried batch is translated again (they were sent twice), a store that failed as a whole
        # reports all the events of its batches instead.
        refused: dict[str, list[Failure]] = {}
        complete = True
        for item in pending:
            first = copying.get(item.session)
            if first is not None and item.seq >= first:
                continue
            root = item.session.store_root
            batch = batches.get(root)
            if batch is None:
                batch = batches[root] = WriteBatch()
                items[root] = []
                refused[root] = []
            items[root].append(item)
            if self._translate(item, batch, refused[root]):
                copying[item.session] = item.seq
                complete = False
        return (batches, items, refused) if complete else None

    def compact_journal(self, seqs: Mapping[str, int]) -> None:
        """Keep the journal small: rewrite it as one snapshot of ``seqs`` once it is large."""
        if self._journal is not None:
            self._journal.compact_if_large(seqs, self._metric_files.owed_cuts)

    def close_idle_files(self) -> None:
        """Writer thread: close the metric files no write used since the last call (MetricFileCache.close_idle),
        and forget the writers of stores unused for IDLE_STORE_SWEEPS calls."""
        self._metric_files.close_idle()
        sweeps = self._idle_sweeps
        for root in list(self._writers):
            sweeps[root] += 1
            if sweeps[root] > IDLE_STORE_SWEEPS:
                # Not writer.close(): that closes the shared cache's files, every store's. Its own
                # files were closed by the sweeps above, unused as long.
                del self._writers[root], sweeps[root]

    def close(self) -> None:
        """Close every writer's cached files and the journal."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self._idle_sweeps.clear()
        self._metric_files.close()
        if self._journal is not None:
            self._journal.close()

    def _translate(self, item: PendingBatch, batch: WriteBatch, refused: list[Failure]) -> bool:
        """Add ``item``'s records to ``batch``; True if an artifact it sends by path must be copied first."""
        origin: Origin = (item.session, item.seq)
        copies = item.copies
        needs_copy = False
        metrics = batch.metrics
        good_keys = self._good_keys
        good_runs = self._good_run_ids
        for record in item.records:
            kind = record[0]
            run_id = record[1]
            try:
                if kind == METRIC or kind == METRIC_SERIES:
                    key = record[2]
                    file = (run_id, key)
                    append = metrics.get(file)
                    if append is None:
                        # A file new to this write: its run id and key are checked here, and its
                        # later points in the write are not (they name the same file).
                        if (checked := good_runs.get(run_id)) is None:
                            validate_written_run_id(run_id)
                            self._remember(good_runs, run_id)
                        else:
                            run_id = checked
                        if (checked := good_keys.get(key)) is None:
                            validate_key(key, kind="metric")
                            self._remember(good_keys, key)
                        else:
                            key = checked
                        append = metrics[file] = MetricAppend(run_id, key, [], [origin], [0])
                    elif append.origins[-1] is not origin:  # one origin tuple per batch: identity is enough
                        append.origins.append(origin)
                        append.starts.append(len(append.points))
                    # MLflow's client turns ints into floats before writing: 7 is stored as 7.0.
                    if kind == METRIC:
                        value = record[3]
                        append.points.append((record[4], value if type(value) is float else float(value), record[5]))
                    else:
                        values = record[3]
                        if int in set(map(type, values)):
                            values = [float(v) for v in values]
                        append.points.extend(zip(record[4], values, record[5]))
                    continue
                if run_id not in good_runs:
                    validate_written_run_id(run_id)
                    self._remember(good_runs, run_id)
                if kind == PARAM:
                    key = validate_key(record[2], kind="param")
                    batch.params.append(ParamWrite(origin, run_id, key, validate_param_value(key, record[3])))
                elif kind == TAG:
                    key = validate_key(record[2], kind="tag")
                    batch.tags.append(TagWrite(origin, run_id, key, validate_tag_value(key, record[3])))
                elif kind == DELETE_TAG:
                    batch.tags.append(TagWrite(origin, run_id, validate_key(record[2], kind="tag"), None))
                elif kind == CREATE_RUN:
                    experiment_id, user_id, run_name, start_time_ms, tags = record[2:7]
                    for key, value in tags.items():
                        validate_tag_value(validate_key(key, kind="tag"), value)
                    # create_run_owner: false for a record without the field (protocols 6 and 7), whose run changes only if new.
                    owner = create_run_owner(record)
                    batch.new_runs.append(
                        NewRun(origin, run_id, experiment_id, user_id, run_name, start_time_ms, dict(tags), owner)
                    )
                elif kind == SET_TERMINATED:
                    status = validate_run_status(record[2])
                    keep_failure = len(record) > 4 and record[4]  # absent in a protocol 2 spool
                    if termination_shared(record) and self._owned_elsewhere(item.session, run_id):
                        continue  # a shared end of a run another live process owns: a detach
                    batch.terminations.append(Termination(origin, run_id, int(status), record[3], keep_failure))
                elif kind == ARTIFACT:
                    path = validate_artifact_path(record[2])  # first: a 2 GB file under a bad path is not copied
                    copy = None
                    if record[4] is not None:
                        copy = copies.get(id(record)) if copies is not None else None
                        needs_copy = needs_copy or copy is None or copy.needed
                    mode = record[6] if len(record) > 6 else None  # absent in a protocol 3 to 5 spool
                    batch.artifacts.append(ArtifactWrite(origin, run_id, path, record[3], record[4], copy, mode))
            except InvalidArgument as exc:
                events = len(record[3]) if kind == METRIC_SERIES else 1
                refused.append(Failure(item.session, item.seq, _describe(record), str(exc), events))
        return needs_copy

    def _owned_elsewhere(self, session: Session, run_id: str) -> bool:
        """Whether a live process other than ``session``'s owns ``run_id`` now (said in the log)."""
        pids = self.other_owners(session.store_root, run_id, session.client_id) if self.other_owners else []
        if pids:
            logger.info(
                "Run %s was ended by process %d, which shares it with live %s %s: left RUNNING for the last of them to end",
                run_id, session.pid, "process" if len(pids) == 1 else "processes", ", ".join(map(str, sorted(pids))),
            )
        return bool(pids)

    @staticmethod
    def _remember(cache: dict[str, str], name: str) -> None:
        if len(cache) >= MAX_CACHED_NAMES:
            cache.clear()
        cache[name] = name


def _discard_copies(items: list[PendingBatch]) -> None:
    """Remove the staged copies the write of ``items`` did not place (an item it refused)."""
    for item in items:
        if item.copies:
            for copy in item.copies.values():
                copy.discard()


def _describe(record: tuple[Any, ...]) -> str:
    kind = RecordKind(record[0]).name.lower().replace("_", " ")
    if record[0] == METRIC_SERIES:
        return f"{kind} {record[2]!r} of run {record[1]} ({counted(len(record[3]), 'point')})"
    if record[0] in (METRIC, PARAM, TAG, DELETE_TAG, ARTIFACT):
        return f"{kind} {record[2]!r} of run {record[1]}"
    return f"{kind} of run {record[1]}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
