"""StoreWriter: applies the daemon's batches to an MLflow ``./mlruns`` store.

One worker thread owns a StoreWriter; it is not thread-safe. Every rewritten file goes through a
temp file and os.replace, and new experiments and runs are built in a staging folder MLflow cannot
see and renamed into place, so an MLflow reader never meets a half-made file or folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import TypeVar

from ..errors import ExperimentExists, ParamChangedError, StoreError, StoreUnavailable, TrackdError
from . import _layout as layout
from ._artifact_writes import write_artifact
from ._confinement import check_confined
from ._entities import LIFECYCLE_ACTIVE, RUN_NAME_TAG
from ._experiment_writes import ExperimentNames, build_experiment, make_root, unused_experiment_id
from ._journal import WriteJournal
from ._key_files import KeyFolders
from ._metric_lines import format_metric_files, format_metric_lines
from ._write_rules import (
    TRANSIENT_ERRNOS,
    item_name,
    journal_call,
    last_write_per_tag,
    origins_of,
    os_error_message,
    refusal,
    with_points,
)
from ._metric_files import MetricFileCache
from ._reader import StoreReader
from ._run_handles import RunHandles, removed_run
from ._run_writes import RunWrites
from ._staging import build_in_staging, remove_stale_staging
from ._write_items import ArtifactWrite, MetricAppend, ParamWrite, RunCounts, TagWrite, WriteBatch, WriteFailure
from ._validation import (
    check_artifact_root,
    check_new_experiment,
    validate_key,
    validate_param_value,
    validate_store_root,
    validate_tag_value,
)

DEFAULT_MAX_OPEN_FILES = 256

_Item = TypeVar("_Item")


class StoreWriter:
    """Writes experiments, runs, params, tags, metrics and artifacts in MLflow's FileStore format."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        metric_files: MetricFileCache | None = None,
        artifact_root: str | None = None,
        run_counts: RunCounts | None = None,
    ) -> None:
        """``metric_files``: a cache shared with the writers of other stores (the file limit is
        the process's, not a store's); by default a cache of ``max_open_files`` of its own.
        ``artifact_root``: see the attribute; by default the root's ``file://`` URI.
        ``run_counts``: see the attribute; by default counts of its own."""
        self.root: str = validate_store_root(root)
        # The URI new experiments without an explicit location go under (FileStore's
        # artifact_root_uri, its tracking URI): a plain path or a file: URI naming the root, as
        # the client that makes them resolved it. The daemon sets it per request.
        self.artifact_root: str = check_artifact_root(self.root, artifact_root)
        self._reader = StoreReader(self.root)
        # The runs this writer made, ended and resumed (the daemon's status shows them): shared
        # with the writers of other stores, as the daemon counts them all together.
        self.run_counts: RunCounts = run_counts if run_counts is not None else RunCounts()
        self._metric_files = metric_files if metric_files is not None else MetricFileCache(max_open_files)
        self._runs = RunHandles(self.root, self._metric_files, self._confine)
        self._experiment_names = ExperimentNames(self.root, self._reader)
        self._prepare_root()
        # Where the root really is, once: nothing is written anywhere that does not resolve below it.
        self._real_root = os.path.realpath(self.root)
        self._roots = (self.root, self._real_root)  # what the metric-file cache checks the folders it opens by
        # The param and tag files' folders a write writes into, each confined and opened once while held.
        metric_files = self._metric_files
        self._key_folders = KeyFolders(self.root, self._real_root, metric_files.key_folders, metric_files.give_back)
        # Metric folders confined in the current write(): each is checked once, not once per new file.
        self._confined: set[str] = set()
        self._run_writes = RunWrites(
            self.root, self._runs, self._reader, metric_files, confine=self._confine,
            build_in_staging=self._build_in_staging, remake_deleted_store=self._remake_deleted_store,
            counts=self.run_counts,
        )
        remove_stale_staging(self.root)

    def _prepare_root(self) -> None:
        # FileStore.__init__ creates root/0 ("Default") only when the root does not exist, and
        # .trash always. We also create experiment 0 in an existing root that lacks it, because
        # MLflow's fluent API logs to experiment 0 by default and fails without it.
        try:
            make_root(self.root, self._build_in_staging, self.artifact_root)
        except OSError as exc:
            if exc.errno in TRANSIENT_ERRNOS:
                # A full disk at a store's first write (or a daemon's first since it started, or a
                # deleted store made again): the batches wait and go again, as for any write the
                # disk refuses. As an OSError it failed them for good, "refused" to their clients.
                raise refusal(f"The store at {self.root}", exc, "the store's folders") from exc
            raise

    # --- experiments ----------------------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        now_ms: int,
    ) -> str:
        """Create an experiment with a fresh 18-digit id and return the id."""
        name, checked_tags = check_new_experiment(name, artifact_location, tags)
        self._remake_deleted_store()
        existing = self._reader.get_experiment_by_name(name)
        if existing is not None and existing.lifecycle_stage == LIFECYCLE_ACTIVE:
            raise ExperimentExists(f"Experiment '{name}' already exists.")  # MLflow's words
        if existing is not None:
            raise ExperimentExists(
                f"Experiment {name!r} already exists in deleted state. You can restore the "
                "experiment, or permanently delete the experiment from the .trash folder "
                "(under tracking server's root folder) in order to use this experiment name again."
            )
        experiment_id = unused_experiment_id(self.root)
        if artifact_location is None:
            artifact_location = layout.experiment_location(self.artifact_root, experiment_id)
        build_experiment(self.root, self._build_in_staging, experiment_id, name, artifact_location, checked_tags, now_ms)
        self._experiment_names.remember(name, experiment_id)
        return experiment_id

    def get_experiment_id_by_name(self, name: str) -> str | None:
        """The id of the active experiment with that name, or None (``ExperimentNames.find``)."""
        self._remake_deleted_store()
        return self._experiment_names.find(name)

    def _remake_deleted_store(self) -> None:
        # The store was deleted (or emptied) while the daemon kept this writer: make experiment 0
        # ("Default") and .trash again, as a fresh daemon would, before looking a name up. Made
        # only when the staging folder was built, create_experiment("Default") made a second
        # experiment of that name beside it, and a lookup of "Default" found none.
        if not os.path.isdir(layout.experiment_dir(self.root, layout.DEFAULT_EXPERIMENT_ID)):
            self._prepare_root()

    def _build_in_staging(self, fill: Callable[[str], None], destination: str) -> None:
        if not os.path.isdir(self.root):
            # The store was deleted while the daemon kept this writer: make it again, as a fresh
            # daemon would (experiment 0 and .trash), before building in it.
            self._prepare_root()
        build_in_staging(self.root, fill, destination)

    # --- batches --------------------------------------------------------------------------------

    def write(
        self,
        batch: WriteBatch,
        *,
        journal: WriteJournal | None = None,
        seqs: Mapping[str, int] | None = None,
    ) -> list[WriteFailure]:
        """Apply a batch; one failing item never stops the others, and each failure is returned.

        With a ``journal``, the metric files' sizes are recorded before they are appended to and
        the batch is committed after, together with ``seqs`` (opaque to the store: the daemon's
        per-client sequence numbers). Raises StoreUnavailable when the disk refuses a write for a
        reason that may pass; the metric files are then cut back to their size before the batch,
        and every other part of a batch is safe to apply again.
        """
        failures: list[WriteFailure] = []
        try:
            # A failed write's tail still in a metric file: this write waits until it is cut off.
            self._metric_files.finish_cuts(self.root)
        except OSError as exc:
            raise refusal(f"The store at {self.root}", exc, "a metric file to cut back") from exc
        self._runs.checked.clear()
        self._confined.clear()
        apply = self._apply
        for new_run in batch.new_runs:
            apply(failures, {new_run.origin: 1}, f"new run {new_run.run_id}", self._run_writes.create, new_run)
        try:
            for param in batch.params:
                apply(failures, {param.origin: 1}, item_name("param", param.key, param.run_id), self._log_param, param)
            for tag in last_write_per_tag(batch.tags):
                apply(failures, {tag.origin: 1}, item_name("tag", tag.key, tag.run_id), self._set_tag, tag)
        finally:
            self._key_folders.close()
        appends = self._locate_metric_files(batch, failures)
        lines = self._format_metric_files(appends, failures)
        sizes, unsized = self._metric_files.sizes([path for _, path, _ in appends])
        if unsized:
            appends, lines = self._drop_unsized(appends, lines, unsized, failures)
        # New files appear last (place), after every other part of the write: a daemon killed
        # before then leaves none to remove (new_file_temps), and one killed after had done the
        # rest, so the next daemon completes the write instead of undoing it (WriteJournal.open).
        temps = self._metric_files.new_file_temps(
            (path, size, folder) for (_, path, folder), (_, size), data in zip(appends, sizes, lines) if data
        )
        if journal is not None:
            # With the cuts owed in other stores: only the last write's are made at the next start.
            entry = journal_call(journal.begin, sizes, seqs or {}, temps, self._metric_files.owed_cuts)
        try:
            self._write_metric_files(appends, lines, temps, failures)
            for artifact in batch.artifacts:
                item = item_name("artifact", artifact.path, artifact.run_id)
                apply(failures, {artifact.origin: 1}, item, self._write_artifact, artifact)
            for end in batch.terminations:
                apply(failures, {end.origin: 1}, f"termination of run {end.run_id}", self._run_writes.terminate, end)
            # Completed at the next start, the write would never tell its clients of its failures, placing's too.
            undoable = partial(journal_call, journal.keep_undoable, entry) if journal is not None and temps else None
            if undoable is not None and failures:
                undoable()
            if temps:  # a pass over every file of the write otherwise, placing none
                self._write_metric_files(appends, lines, temps, failures, place=True, on_failure=None if failures else undoable)
            for end in batch.terminations:
                # An ended run's files are done with, most likely: give their descriptors back now
                # (a finished run deleted to free space frees it), after its new files were placed
                # (placing holds them). Another rank still logging reopens them. Those the handle
                # no longer remembers (past MAX_REMEMBERED_METRIC_PATHS) go at the next idle sweep.
                if (handle := self._runs.get(end.run_id)) is not None:
                    self._metric_files.close_files(handle.metric_paths.values())
        except StoreUnavailable:
            self._metric_files.rollback(sizes, temps.values())
            if journal is not None and temps and self._metric_files.owed_cuts:
                # A placed new file it could not remove would make the next start complete this
                # write (WriteJournal.open) and count it written, the cut-back files' points lost.
                with contextlib.suppress(StoreUnavailable, OSError):
                    journal_call(journal.keep_undoable, entry)
            raise
        finally:
            self._runs.checked.clear()
            self._confined.clear()
            self._metric_files.end_write()
        if journal is not None:
            try:
                journal_call(journal.commit, entry)
            except StoreUnavailable:
                # Written but not committed: undo it, so the retry writes it exactly once.
                self._metric_files.rollback(sizes)
                raise
        return failures

    def _locate_metric_files(
        self, batch: WriteBatch, failures: list[WriteFailure]
    ) -> list[tuple[MetricAppend, str, str]]:
        """(append, file, run folder) of every metric append whose run and key are valid; the others
        become failures.

        This and _write_metric_files run once per file per write, so they keep to dict lookups for a
        file seen before (10,000 files at a few points each: the Python per file cost more than
        its write()).
        """
        located = []
        runs = self._runs.checked
        checked = self._metric_files.checked
        confined = self._confined
        for append in batch.metrics.values():
            try:
                handle = runs.get(append.run_id) or self._runs.active(append.run_id)
                path = handle.metric_paths.get(append.key)
                if path is None:
                    path = layout.metric_path(handle.folder, validate_key(append.key, kind="metric"))
                    if (folder := os.path.dirname(path)) not in confined:
                        # By path, as the new file is linked into place: once per folder per write
                        # (5,000 new keys of a run: one realpath(), not 5,000).
                        self._confine(folder)
                        confined.add(folder)
                    self._runs.remember_path(handle, append.key, path)
                elif not checked(path) and (folder := os.path.dirname(path)) not in confined:
                    # Checked when the file or its folder is opened; then written through the descriptor.
                    self._confine(folder)
                    confined.add(folder)
            except (TrackdError, OSError) as exc:
                item = item_name("metric", append.key, append.run_id)
                message = str(exc) if isinstance(exc, TrackdError) else f"Cannot write {item}: {exc}."
                failures.extend(WriteFailure(o, with_points(item, n), message, n) for o, n in origins_of(append).items())
                continue
            if append.points:
                located.append((append, path, handle.folder))
        return located

    def _format_metric_files(self, appends: list[tuple[MetricAppend, str, str]], failures: list[WriteFailure]) -> list[bytes]:
        """Every file's lines, formatted in one call; b"" for a file whose points do not format."""
        try:
            return format_metric_files([append.points for append, _, _ in appends])
        except (TypeError, ValueError):  # not a float somewhere: each file on its own, to name it
            lines = [b""] * len(appends)
            for index, (append, _, _) in enumerate(appends):
                try:
                    lines[index] = format_metric_lines(append.points)
                except (TypeError, ValueError) as exc:
                    self._record_failure(failures, origins_of(append), item_name("metric", append.key, append.run_id), exc)
            return lines

    def _drop_unsized(
        self, appends: list[tuple[MetricAppend, str, str]], lines: list[bytes], unsized: Mapping[str, OSError],
        failures: list[WriteFailure],
    ) -> tuple[list[tuple[MetricAppend, str, str]], list[bytes]]:
        """The appends and lines without the files sizes() could not look at, each a failure of its
        own (raised as StoreUnavailable when the disk is at fault: EIO, the batch waits): a run whose
        metrics/ folder is not searchable (EACCES) failed every client's points in the same write."""
        kept: tuple[list[tuple[MetricAppend, str, str]], list[bytes]] = ([], [])
        for located, data in zip(appends, lines):
            exc = unsized.get(located[1])
            if exc is None:
                kept[0].append(located)
                kept[1].append(data)
            elif data:  # (b"": its points did not format, a failure already)
                append = located[0]
                self._record_failure(failures, origins_of(append), item_name("metric", append.key, append.run_id), exc)
        return kept

    def _write_metric_files(
        self, appends: list[tuple[MetricAppend, str, str]], lines: list[bytes], temps: dict[str, str],
        failures: list[WriteFailure], *, place: bool = False, on_failure: Callable[[], None] | None = None,
    ) -> None:
        """One write() per existing file, and each new file's lines to its temp file (one that cannot be written
        is taken out of ``temps``); with ``place``, the new files linked into place (``on_failure``: at the first failure)."""
        cache, roots = self._metric_files, self._roots
        for (append, path, folder), data in zip(appends, lines):
            temp = temps.get(path)
            if not data or (place and temp is None):
                continue
            try:
                if temp is None:
                    cache.append(path, data, roots, folder)
                elif place:
                    cache.place(path, temp, data, roots)
                else:
                    cache.stage(path, temp, data)
            except (TrackdError, OSError) as exc:  # TrackdError: a link or FIFO planted at the key's path
                temps.pop(path, None)
                item = item_name("metric", append.key, append.run_id)
                if isinstance(exc, FileNotFoundError):  # its run's folder removed by hand during this write?
                    exc = removed_run(item, folder, self.root) or exc
                self._record_failure(failures, origins_of(append), item, exc)
                if on_failure is not None:
                    on_failure()
                    on_failure = None

    def _apply(
        self,
        failures: list[WriteFailure],
        origins: Mapping[Hashable, int],
        item: str,
        action: Callable[[_Item], None],
        argument: _Item,
    ) -> None:
        try:
            action(argument)
        except (TrackdError, OSError, TypeError, ValueError) as exc:
            self._record_failure(failures, origins, item, exc)

    def _record_failure(
        self, failures: list[WriteFailure], origins: Mapping[Hashable, int], item: str, exc: Exception
    ) -> None:
        """A failure of ``item`` for each origin (with the events it held of it); re-raised as
        StoreUnavailable when the disk is at fault."""
        if isinstance(exc, TrackdError):
            message = str(exc)
        elif isinstance(exc, OSError):
            if exc.errno in TRANSIENT_ERRNOS:
                # The disk, not the item, is at fault: the whole batch waits and is written again.
                raise refusal(f"The store at {self.root}", exc, item) from exc
            message = os_error_message(item, exc)
        else:
            message = f"Cannot write {item}: {exc}."
        failures.extend(WriteFailure(origin, with_points(item, events), message, events) for origin, events in origins.items())

    # --- runs -----------------------------------------------------------------------------------

    def fail_running_run(self, run_id: str, end_time_ms: int, tags: Mapping[str, str]) -> bool:
        """Set the run FAILED, ended at ``end_time_ms``, with ``tags``, if and only if it is RUNNING;
        return whether it was (``RunWrites.fail_running_run``)."""
        return self._run_writes.fail_running_run(run_id, end_time_ms, tags)

    # --- params, tags, metrics, artifacts ---------------------------------------------------------

    def _log_param(self, item: ParamWrite) -> None:
        handle = self._runs.active(item.run_id)
        key = validate_key(item.key, kind="param")
        value = validate_param_value(key, item.value)
        current = self._key_folders.write_new(handle.folder, layout.param_path(handle.folder, key), value)
        if current is not None and current != value:
            # FileStore._validate_new_param_value, MLflow's words.
            raise ParamChangedError(
                f"Changing param values is not allowed. Param with key='{key}' was already "
                f"logged with value='{current}' for run ID='{item.run_id}'. Attempted logging "
                f"new value '{value}'."
            )

    def _set_tag(self, item: TagWrite) -> None:
        handle = self._runs.active(item.run_id)
        key = validate_key(item.key, kind="tag")
        path = layout.tag_path(handle.folder, key)
        if item.value is None:
            if not self._key_folders.remove(handle.folder, path):
                # FileStore.delete_tag raises the same for a missing tag, in these words.
                raise StoreError(f"No tag with name: {key} in run with id {item.run_id}")
            return
        value = validate_tag_value(key, item.value)
        self._key_folders.replace(handle.folder, path, value)
        if key == RUN_NAME_TAG:
            # FileStore.set_tag: setting mlflow.runName also rewrites run_name in meta.yaml.
            self._runs.rewrite_meta(handle, run_name=value)

    def _write_artifact(self, item: ArtifactWrite) -> None:
        handle = self._runs.active(item.run_id)
        write_artifact(item, str(handle.meta.get("artifact_uri") or ""), self.root, self._real_root)

    def _confine(self, folder: str) -> None:
        """Refuse to write below ``folder`` unless it resolves inside the root, through no link."""
        check_confined(folder, self.root, self._real_root)

    def close(self) -> None:
        """Close every cached metric file; idempotent."""
        self._metric_files.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
