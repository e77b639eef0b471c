"""Runs as the writer makes and ends them: a new run's folder, an owner's create, a run's end.

A run is built in a staging folder and renamed into place, meta.yaml last, so an MLflow reader
never sees a half-made run. Several processes of a distributed job may create the same run: the
first create makes it, and the owner's (the process that ends it) is applied over whichever came
first. A run ends with its meta.yaml rewritten (``RunHandles.rewrite_meta``): terminated by its
client, or failed by the daemon for a process that exited without ending it. Each change is
counted in the writer's RunCounts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ..errors import ExperimentNotFound, InvalidArgument, StoreError
from . import _layout as layout
from ._confinement import check_regular_or_missing
from ._entities import LIFECYCLE_ACTIVE, RUN_NAME_TAG, Experiment, RunInfo, RunStatus
from ._experiment_writes import made_ahead
from ._format import dump_yaml, file_signature, run_info_to_meta, write_file_atomic, write_key_file
from ._metric_files import MetricFileCache
from ._reader import StoreReader
from ._run_handles import RunHandle, RunHandles
from ._validation import (
    validate_experiment_id,
    validate_key,
    validate_new_run_id,
    validate_run_id,
    validate_run_status,
    validate_run_time,
    validate_tag_value,
)
from ._write_items import NewRun, RunCounts, Termination
from ._write_rules import end_kept_out


class RunWrites:
    """Creates and ends the runs of one store, for its StoreWriter (on the writer's one thread)."""

    def __init__(
        self,
        root: str,
        runs: RunHandles,
        reader: StoreReader,
        metric_files: MetricFileCache,
        *,
        confine: Callable[[str], None],
        build_in_staging: Callable[[Callable[[str], None], str], None],
        remake_deleted_store: Callable[[], None],
        counts: RunCounts,
    ) -> None:
        """``confine``, ``build_in_staging`` and ``remake_deleted_store``: the writer's (its store
        root checked, deleted or not); ``counts``: where the runs made and ended are counted."""
        self._root = root
        self._runs = runs
        self._reader = reader
        self._metric_files = metric_files
        self._confine = confine
        self._build_in_staging = build_in_staging
        self._remake_deleted_store = remake_deleted_store
        self._counts = counts

    def create(self, item: NewRun) -> None:
        """Create the run ``item`` asks for, in staging and renamed into place; an owner's create of a
        run another process made first is applied over it (``_apply_owner_creation``)."""
        run_id = validate_new_run_id(item.run_id, lambda run_id: self._runs.find(run_id) is not None)
        experiment_id = validate_experiment_id(item.experiment_id)
        if self._created_already(run_id, experiment_id):
            self._apply_owner_creation(item)
            return
        experiment = self._active_experiment(experiment_id)
        tags, run_name = _new_run_tags(item)
        info = RunInfo(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run_name,
            user_id=item.user_id,
            status=RunStatus.RUNNING.name,
            start_time=validate_run_time("start_time", run_id, item.start_time_ms),
            end_time=None,
            artifact_uri=layout.artifact_uri_for_run(experiment.artifact_location, run_id),
            lifecycle_stage=LIFECYCLE_ACTIVE,
        )
        meta = run_info_to_meta(info)

        def fill(staging: str) -> None:
            for name in layout.RUN_FOLDERS:
                # exist_ok: artifacts/ of a run made ahead (see made_ahead) is there already.
                os.makedirs(layout.subfolder(staging, name), exist_ok=True)
            for key, value in tags.items():
                write_key_file(layout.tag_path(staging, key), value, staging)
            # meta.yaml last: the folder is complete before anything can treat it as a run.
            write_file_atomic(layout.meta_path(staging), dump_yaml(meta), staging)

        folder = layout.run_dir(layout.experiment_dir(self._root, experiment_id), run_id)
        # The run folder is renamed into place: an experiment folder planted as a link would move it out.
        self._confine(os.path.dirname(folder))
        try:
            self._build_in_staging(fill, folder)
        except FileExistsError:
            # Another daemon on this store (a rank logging through another node's) made it meanwhile.
            if self._created_already(run_id, experiment_id):
                self._apply_owner_creation(item)
                return
            if not made_ahead(folder):
                raise
            # The run's code wrote into its artifact folder (get_artifact_uri() is a path when
            # the tracking URI is) before the daemon made the run: completed where it is, its
            # folders first and meta.yaml last, as in staging (MLflow skips a run without meta.yaml).
            self._confine(folder)
            fill(folder)
        signature = file_signature(os.stat(layout.meta_path(folder)))
        self._runs.keep(run_id, RunHandle(experiment_id, folder, meta, signature))
        self._counts.created += 1

    def _apply_owner_creation(self, item: NewRun) -> None:
        """The owner's create of a run another process's create made first: the run takes the
        owner's name, user, start time and tags, as if the owner's had come first.

        Without this the run kept whichever create won the race: rank 3's random name instead of
        the run_name rank 0 gave, and none of rank 0's tags or description. Each tag is written
        as set_tag writes it, and meta.yaml is rewritten through a temp file (rewrite_meta, as
        SET_TERMINATED does). Tags the other create set and the owner's does not are kept.

        Applying it again is harmless where it can happen: a daemon restarted mid-write, or a
        spool replayed, delivers the owner's create again in order, followed by the owner's own
        later records (a set_tag of mlflow.runName included), which apply again after it (a
        client's batches are written again from the first one not written, never one alone). A
        rename by another process written between the two is undone, as an owner's create that
        arrives after it undoes it. A create that is not the owner's, or of a deleted run, changes nothing.
        """
        if not item.owner:
            return
        handle = self._runs.find(item.run_id)
        if handle is None or handle.meta.get("lifecycle_stage", LIFECYCLE_ACTIVE) != LIFECYCLE_ACTIVE:
            return
        tags, run_name = _new_run_tags(item)
        start_time = validate_run_time("start_time", item.run_id, item.start_time_ms)
        for key, value in tags.items():
            path = layout.tag_path(handle.folder, key)
            self._confine_file(path)
            write_key_file(path, value, handle.folder)
        # The owner's start time, earlier or later than the other create's: the run is the
        # owner's (it ends it, its duration is the owner's), and what the store holds must not
        # depend on which create reached it first.
        self._runs.rewrite_meta(handle, run_name=run_name, user_id=item.user_id, start_time=start_time)

    def _created_already(self, run_id: str, experiment_id: str) -> bool:
        """Whether the run exists in that experiment (another rank of a distributed job created it
        first); StoreError if it exists in another one."""
        existing = self._runs.find(run_id)
        if existing is None:
            return False
        if existing.experiment_id != experiment_id:
            raise StoreError(
                f"Run {run_id} already exists in experiment {existing.experiment_id}, so it "
                f"cannot be created in experiment {experiment_id}."
            )
        return True

    def _active_experiment(self, experiment_id: str) -> Experiment:
        if experiment_id == layout.DEFAULT_EXPERIMENT_ID:
            # Instead of refusing every new run of a deleted store until a restart.
            self._remake_deleted_store()
        try:
            experiment = self._reader.get_experiment(experiment_id)
        except ExperimentNotFound:
            raise ExperimentNotFound(
                f"Could not create run under experiment with ID {experiment_id} - no such "
                "experiment exists."
            ) from None
        if experiment.lifecycle_stage != LIFECYCLE_ACTIVE:
            raise StoreError(
                f"Could not create run under non-active experiment with ID {experiment_id}."
            )
        return experiment

    def terminate(self, item: Termination) -> None:
        """End the run as ``item`` says, unless the end is kept out (``end_kept_out``)."""
        handle = self._runs.active(item.run_id)
        status = validate_run_status(item.status)
        end_time = validate_run_time("end_time", item.run_id, item.end_time_ms)
        if end_kept_out(item, handle.meta):  # a failure another process set, or a stale end
            return
        before = handle.meta.get("status")
        self._runs.rewrite_meta(handle, status=int(status), end_time=end_time)
        if before in RunStatus.all_status() and RunStatus.is_terminated(before) != RunStatus.is_terminated(status):
            if RunStatus.is_terminated(status):
                self._counts.ended[status.name] += 1
            else:  # resumed: MLflow's start_run(run_id=) of an ended run
                self._counts.resumed += 1

    def fail_running_run(self, run_id: str, end_time_ms: int, tags: Mapping[str, str]) -> bool:
        """Set the run FAILED, ended at ``end_time_ms``, with ``tags``, if and only if it is RUNNING;
        return whether it was. A run ended, deleted or missing is left alone (the daemon fails the
        runs of a process that exited without ending them)."""
        handle = self._runs.find(validate_run_id(run_id))
        if handle is None or handle.meta.get("lifecycle_stage", LIFECYCLE_ACTIVE) != LIFECYCLE_ACTIVE:
            return False
        if handle.meta.get("status") != int(RunStatus.RUNNING):
            return False
        end_time = validate_run_time("end_time", run_id, end_time_ms)
        for key, value in tags.items():
            path = layout.tag_path(handle.folder, validate_key(key, kind="tag"))
            self._confine_file(path)
            write_key_file(path, validate_tag_value(key, value), handle.folder)
        self._runs.rewrite_meta(handle, status=int(RunStatus.FAILED), end_time=end_time)
        self._counts.ended[RunStatus.FAILED.name] += 1
        self._metric_files.close_files(handle.metric_paths.values())
        return True

    def _confine_file(self, path: str) -> None:
        """_confine() for a param or tag file's folder, and the file itself no link or FIFO."""
        self._confine(os.path.dirname(path))
        check_regular_or_missing(path)


def _new_run_tags(item: NewRun) -> tuple[dict[str, str], str]:
    """A new run's checked tags, mlflow.runName included, and its name."""
    tags = {validate_key(k, kind="tag"): validate_tag_value(k, v) for k, v in item.tags.items()}
    run_name = item.run_name or tags.get(RUN_NAME_TAG, "")
    if tags.setdefault(RUN_NAME_TAG, run_name) != run_name:
        # FileStore.create_run refuses the same conflict, in these words.
        raise InvalidArgument(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{run_name}', mlflow.runName='{tags[RUN_NAME_TAG]}')."
        )
    return tags, run_name
