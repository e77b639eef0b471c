"""The runs a store's writer has found: each run's folder, its meta.yaml as last read or written,
and the metric files of it already located, in bounded memory.

A run is looked up on disk once (``layout.find_run_dir``) and then found here; its meta.yaml is
read again only when something else rewrote it (its size, mtime or inode changed), and rewritten
through a temp file (``rewrite_meta``). Past MAX_RUN_HANDLES the least recently written run is
forgotten and found again on disk if it is written once more; past MAX_REMEMBERED_METRIC_PATHS every
run forgets its located metric files. Used by ``StoreWriter`` on its one worker thread only.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunNotFound, StoreError
from . import _layout as layout
from ._entities import LIFECYCLE_ACTIVE
from ._format import dump_yaml, file_signature, load_yaml, write_file_atomic
from ._metric_files import MetricFileCache
from ._validation import validate_run_id

# Metric paths a store's writer remembers across its runs (RunHandle.metric_paths); past this many all are forgotten,
# so a client inventing a key per step cannot grow the daemon without bound (~150 bytes each).
MAX_REMEMBERED_METRIC_PATHS = 200_000
# Run handles kept (~1 KB each with their meta.yaml); past this the least recently written run is
# forgotten and found again on disk if it is written once more, so a daemon that serves
# benchmark suites for months does not keep every run it ever wrote.
MAX_RUN_HANDLES = 100_000


@dataclass(slots=True)
class RunHandle:
    """A run the writer has found: its folder and its meta.yaml as last read or written."""

    experiment_id: str
    folder: str
    meta: dict[str, Any]
    signature: tuple[int, int, int]
    # Metric key -> its file, for keys already checked and located: a write touching 10,000
    # files would otherwise validate and join 10,000 paths again each time.
    metric_paths: dict[str, str] = field(default_factory=dict)


class RunHandles:
    """The handles of the runs one store's writer has found, least recently written first."""

    def __init__(self, root: str, metric_files: MetricFileCache, confine: Callable[[str], None]) -> None:
        """``confine``: the writer's check that a run's folder resolves inside the store."""
        self._root = root
        self._metric_files = metric_files
        self._confine = confine
        self._runs: OrderedDict[str, RunHandle] = OrderedDict()
        self.checked: dict[str, RunHandle] = {}  # runs found active in the current write()
        self.remembered_paths = 0

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> RunHandle | None:
        """The run's handle if it is kept, as it is (nothing read from disk)."""
        return self._runs.get(run_id)

    def find(self, run_id: str) -> RunHandle | None:
        """The run's handle, re-reading meta.yaml if anything rewrote it; None if there is no run."""
        handle = self._runs.get(run_id)
        if handle is not None:
            self._runs.move_to_end(run_id)
            try:
                stat = os.stat(layout.meta_path(handle.folder))
            except FileNotFoundError:  # moved to .trash with its experiment, or hard-deleted
                self._forget(run_id)
                handle = None
            else:
                if file_signature(stat) != handle.signature:
                    handle.meta = load_yaml(layout.meta_path(handle.folder))
                    handle.signature = file_signature(stat)
                return handle
        found = layout.find_run_dir(self._root, validate_run_id(run_id))
        if found is None:
            return None
        experiment_id, folder = found
        # Once per run handle (it is cached): every write of the run goes below this folder.
        self._confine(folder)
        path = layout.meta_path(folder)
        signature = file_signature(os.stat(path))
        handle = RunHandle(experiment_id, folder, load_yaml(path), signature)
        self.keep(run_id, handle)
        return handle

    def active(self, run_id: str) -> RunHandle:
        """The handle of a run that exists and is active, looked at once per write (``checked``);
        RunNotFound or StoreError otherwise."""
        handle = self.checked.get(run_id)
        if handle is not None:
            return handle
        handle = self.find(run_id)
        if handle is None:
            raise RunNotFound(f"Run '{run_id}' not found in the store at {self._root!r}.")
        if handle.meta.get("lifecycle_stage", LIFECYCLE_ACTIVE) != LIFECYCLE_ACTIVE:
            # entities/run_info.py:check_run_is_active, MLflow's words.
            raise StoreError(f"The run {run_id} must be in 'active' lifecycle_stage.")
        self.checked[run_id] = handle
        return handle

    def keep(self, run_id: str, handle: RunHandle) -> None:
        """Keep ``handle``, forgetting the least recently written runs past MAX_RUN_HANDLES."""
        self._runs[run_id] = handle
        while len(self._runs) > MAX_RUN_HANDLES:
            self._forget(next(iter(self._runs)))

    def _forget(self, run_id: str) -> None:
        handle = self._runs.pop(run_id, None)
        self.checked.pop(run_id, None)
        if handle is not None:
            self.remembered_paths -= len(handle.metric_paths)
            self._metric_files.close_under(handle.folder)

    def rewrite_meta(self, handle: RunHandle, **changes: Any) -> None:
        """Rewrite the run's meta.yaml with ``changes`` (a temp file, then os.replace)."""
        meta = {**handle.meta, **changes}
        # run_uuid keeps the run readable by MLflow <= 2.22, whose RunInfo requires it.
        meta["run_uuid"] = meta.get("run_id", os.path.basename(handle.folder))
        path = layout.meta_path(handle.folder)
        write_file_atomic(path, dump_yaml(meta), handle.folder)
        handle.meta = meta
        handle.signature = file_signature(os.stat(path))

    def remember_path(self, handle: RunHandle, key: str, path: str) -> None:
        """Remember ``path`` as the run's file of metric ``key``, checked and located, within
        MAX_REMEMBERED_METRIC_PATHS for all runs."""
        if self.remembered_paths >= MAX_REMEMBERED_METRIC_PATHS:
            for run in self._runs.values():
                run.metric_paths.clear()
            self.remembered_paths = 0
        handle.metric_paths[key] = path
        self.remembered_paths += 1


def removed_run(item: str, run_folder: str, root: str) -> RunNotFound | None:
    """The error for ``item``, which met a missing file or folder, if the reason is that its run's
    folder is gone (removed by hand while a write was writing into it); None if the folder is there.

    Between writes a removed run is "not found" (RunHandles.active); during one, its items met the
    folder's absence as a missing temp file of theirs ("No such file or directory
    ('.../<run>/.trackd-....tmp')"), which named neither the run nor what happened to it.
    """
    if os.path.lexists(run_folder):
        return None
    return RunNotFound(
        f"Cannot write {item}: run '{os.path.basename(run_folder)}' not found in the store at {root!r}; "
        f"its folder {run_folder!r} was removed during the write."
    )
