"""StoreReader: reads an MLflow ``./mlruns`` store, whether trackd or MLflow wrote it.

It is tolerant exactly where MLflow 3.17.2's FileStore is (spec §5): it skips experiments and runs
that MLflow skips, and where MLflow would crash it raises CorruptStoreFile naming the path, the
line, what was found and what was expected. One exception: search_runs skips, with a warning, a
run folder whose meta.yaml names another run id, where MLflow's search fails for the whole
experiment ("Invalid parent directory").
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence

from ..errors import ArtifactNotFound, CorruptStoreFile, ExperimentNotFound, InvalidArgument, RunNotFound, StoreError
from . import _layout as layout
from ._entities import LIFECYCLE_ACTIVE, RUN_NAME_TAG, Experiment, FileInfo, Metric, Run, RunData, RunInfo, ViewType
from ._format import experiment_from_meta, load_yaml, read_regular, read_text, run_info_from_meta
from ._metric_lines import latest_metric_value, parse_metric_lines
from ._validation import validate_artifact_path, validate_experiment_id, validate_key_to_read, validate_run_id

# meta.yaml's first line when the artifact location is a file URI or an absolute path of plain
# characters only: YAML reads such a plain scalar as exactly this text. The next line must be
# another key (a continuation line would start with a space).
_PLAIN_ARTIFACT_LOCATION = re.compile(rb"artifact_location: ((?:file://)?/[A-Za-z0-9_.~%/+-]*)\n(?=[a-z_]+: )")


class StoreReader:
    """Reads experiments, runs, metric histories and artifact listings."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root: str = os.path.abspath(os.fspath(root))

    # --- experiments ----------------------------------------------------------------------------

    def list_experiments(
        self, view_type: ViewType = ViewType.ACTIVE_ONLY, filter_string: str | None = None, order_by: Sequence[str] | None = None
    ) -> list[Experiment]:
        """Experiments in MLflow's order (creation_time DESC, then experiment_id), or those
        ``filter_string`` keeps in ``order_by``'s order (MLflow's search grammar, _search.py).

        As FileStore.search_experiments, the folder decides: active ones at the root, deleted ones in .trash.
        """
        search = None
        if filter_string or order_by:  # checked before any file is read, as MLflow parses first
            from ._search import experiment_search

            search = experiment_search(filter_string, order_by)
        experiments = []
        folders = layout.iter_experiment_dirs(
            self.root,
            include_active=view_type is not ViewType.DELETED_ONLY,
            include_deleted=view_type is not ViewType.ACTIVE_ONLY,
        )
        for experiment_id, folder in folders:
            experiment = self._read_experiment(experiment_id, folder)
            if experiment is not None:
                experiments.append(experiment)
        if search is not None:
            return search(experiments)
        return sorted(experiments, key=lambda e: (-(e.creation_time or 0), e.experiment_id))

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The active or deleted experiment with that id."""
        experiment_id = validate_experiment_id(experiment_id)
        for folder in (
            layout.experiment_dir(self.root, experiment_id),
            layout.deleted_experiment_dir(self.root, experiment_id),
        ):
            if os.path.isdir(folder):
                experiment = self._read_experiment(experiment_id, folder)
                if experiment is not None:
                    return experiment
        raise ExperimentNotFound(
            f"Could not find experiment with ID {experiment_id} in the store at {self.root!r}."
        )

    def artifact_location_for_new_run(self, experiment_id: str) -> str:
        """get_experiment(experiment_id).artifact_location, without PyYAML when the file allows;
        InvalidArgument if the experiment is deleted, as no run can be made in it.

        Every new run needs it, and importing PyYAML was ~11 ms of a short process. meta.yaml as
        MLflow and trackd write it (yaml.safe_dump, keys sorted) starts with the artifact location;
        a plain URI or path there (no spaces, quotes or other YAML syntax) reads as itself, and
        anything else goes through get_experiment.
        """
        experiment_id = validate_experiment_id(experiment_id)
        try:
            head = read_regular(layout.meta_path(layout.experiment_dir(self.root, experiment_id)))[:4096]
        except (OSError, StoreError):  # get_experiment says why
            head = b""
        match = _PLAIN_ARTIFACT_LOCATION.match(head)
        if match is not None and f"\nexperiment_id: '{experiment_id}'\n".encode() in head:
            if f"\nlifecycle_stage: {LIFECYCLE_ACTIVE}\n".encode() in head:
                return match.group(1).decode("ascii")
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LIFECYCLE_ACTIVE:
            # FileStore.create_run's check, in its words: the daemon refused such a run only at the
            # next flush(), after start_run() had returned it and the job had logged to it.
            raise InvalidArgument(f"Could not create run under non-active experiment with ID {experiment_id}.")
        return experiment.artifact_location

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment with that name, active or deleted (as MLflow's get_experiment_by_name)."""
        for experiment in self.list_experiments(ViewType.ALL):
            if experiment.name == name:
                return experiment
        return None

    def _read_experiment(self, experiment_id: str, folder: str) -> Experiment | None:
        path = layout.meta_path(folder)
        # search_experiments skips, with a warning, an experiment whose meta.yaml is missing or
        # empty (MissingConfigException) and one whose recorded id differs from its folder name.
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return None
        tags = _read_key_files(layout.subfolder(folder, layout.TAGS_FOLDER_NAME))
        experiment = experiment_from_meta(load_yaml(path), tags, path)
        return experiment if experiment.experiment_id == experiment_id else None

    # --- runs -----------------------------------------------------------------------------------

    def find_run(self, run_id: str) -> RunInfo | None:
        """The run's info, or None if no experiment (active or deleted) holds a valid run folder."""
        found = self._find_run_dir(run_id)
        return None if found is None else found[0]

    def get_run(self, run_id: str) -> Run:
        """The run with its latest metrics, params and tags."""
        found = self._find_run_dir(run_id)
        if found is None:
            raise RunNotFound(f"Run '{run_id}' not found in the store at {self.root!r}.")
        return self._read_run(*found)

    def get_run_tags(self, run_id: str) -> dict[str, str]:
        """The run's tags alone (no metric file read)."""
        return self._key_files(run_id, layout.TAGS_FOLDER_NAME)

    def get_run_params(self, run_id: str) -> dict[str, str]:
        """The run's params alone (no metric file read)."""
        return self._key_files(run_id, layout.PARAMS_FOLDER_NAME)

    def _key_files(self, run_id: str, folder_name: str) -> dict[str, str]:
        found = self._find_run_dir(run_id)
        if found is None:
            raise RunNotFound(f"Run '{run_id}' not found in the store at {self.root!r}.")
        return _read_key_files(layout.subfolder(found[1], folder_name))

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        filter_string: str = "",
        order_by: Sequence[str] | None = None,
    ) -> list[Run]:
        """Runs of those experiments in ``view_type`` in MLflow's default order (start_time DESC, then
        run_id), or those ``filter_string`` keeps in ``order_by``'s order (MLflow's search grammar, _search.py)."""
        search = None
        if filter_string or order_by:  # checked before any run is read, as MLflow parses first
            from ._search import run_search

            search = run_search(filter_string, order_by)
        runs = []
        for experiment_id in experiment_ids:
            experiment_id = validate_experiment_id(experiment_id)
            folder = layout.experiment_dir(self.root, experiment_id)
            if not os.path.isdir(folder):
                folder = layout.deleted_experiment_dir(self.root, experiment_id)
            for name, run_folder in layout.iter_run_dirs(folder):
                info = _listed_run_info(experiment_id, name, run_folder)
                if info is not None and view_type.matches(info.lifecycle_stage):
                    runs.append(self._read_run(info, run_folder))
        if search is not None:
            return search(runs)
        return sorted(runs, key=lambda run: (-run.info.start_time, run.info.run_id))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every logged value of a metric in file order, each naming its run (``run_id``, as MLflow 3's
        FileStore sets it); [] if the run never logged it. InvalidArgument for a key MLflow's
        reader refuses (not a relative, normalized path of a key's characters), before the run is
        looked up, as MLflow's order is."""
        key = validate_key_to_read(key, kind="metric")
        found = self._find_run_dir(run_id)
        if found is None:
            raise RunNotFound(f"Run '{run_id}' not found in the store at {self.root!r}.")
        path = layout.metric_path(found[1], key)
        if not os.path.isfile(path):
            return []
        return parse_metric_lines(key, read_regular(path), path, run_id)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The direct children of an artifact folder, as MLflow's list_artifacts gives them.

        Sorted, with paths relative to the artifact root: ``cfg`` (a folder, file_size None) and
        ``f1.txt`` for the root, ``cfg/config.json`` for ``path="cfg"``; [] for a path that is
        missing or is a file. ``path`` is normalized as MLflow does ("cfg/" and "./cfg" are "cfg").
        InvalidArgument for a run whose artifacts are not on this machine (``s3://``), as
        artifact_local_path: [] said the run had none.
        """
        artifacts_root = self._local_artifacts_root(run_id)
        relative = _artifact_folder(path)
        folder = artifacts_root if relative is None else layout.artifact_path(artifacts_root, relative)
        infos = []
        for name, is_dir in layout.list_children(folder):
            if name.startswith(layout.MLFLOW_ARTIFACT_TEMP_PREFIX):
                continue
            child = layout.join_relative(relative, name)
            size = None if is_dir else os.path.getsize(layout.artifact_path(artifacts_root, child))
            infos.append(FileInfo(path=child, is_dir=is_dir, file_size=size))
        return infos

    def artifact_local_path(self, run_id: str, path: str | None) -> str:
        """The absolute path in the store of a run's artifact file or folder (its artifact root for
        None, "" or "."), normalized as list_artifacts normalizes ``path``.

        Raises RunNotFound, ArtifactNotFound for a path that does not exist, and InvalidArgument for
        one outside the artifact root or a run whose artifacts are not on this machine (``s3://``).
        """
        artifacts_root = self._local_artifacts_root(run_id)
        relative = _artifact_folder(path)
        local = artifacts_root if relative is None else layout.artifact_path(artifacts_root, relative)
        if not os.path.exists(local):
            # MLflow's RunsArtifactRepository: "Failed to download artifacts from path 'x', please
            # ensure that the path is correct." (RESOURCE_DOES_NOT_EXIST).
            raise ArtifactNotFound(
                f"Artifact {path!r} of run {run_id} does not exist (no {local!r}); expected a file or folder "
                f"that list_artifacts(run_id) lists."
            )
        return local

    def _local_artifacts_root(self, run_id: str) -> str:
        """The run's artifact folder on this machine; RunNotFound, or InvalidArgument if its
        artifact URI is not a local path or file: URI."""
        info = self.find_run(run_id)
        if info is None:
            raise RunNotFound(f"Run '{run_id}' not found in the store at {self.root!r}.")
        artifacts_root = layout.file_uri_to_path(info.artifact_uri)
        if artifacts_root is None:
            raise InvalidArgument(
                f"Run {run_id}'s artifacts are at {info.artifact_uri!r}, which trackd does not read; "
                f"expected a local path or file: URI (list or download them with MLflow itself)."
            )
        return artifacts_root

    def _find_run_dir(self, run_id: str) -> tuple[RunInfo, str] | None:
        found = layout.find_run_dir(self.root, validate_run_id(run_id))
        if found is None:
            return None
        experiment_id, folder = found
        path = layout.meta_path(folder)
        if not os.path.isfile(path):
            return None
        info = run_info_from_meta(load_yaml(path), path)
        # _get_run_info: a run whose meta names another experiment or another run id is
        # "metadata in invalid state".
        if info.experiment_id != experiment_id or info.run_id != run_id:
            raise CorruptStoreFile(
                f"Run meta {path!r} records run {info.run_id} of experiment {info.experiment_id}, "
                f"expected run {run_id} of experiment {experiment_id} (its folder)."
            )
        return info, folder

    def _read_run(self, info: RunInfo, folder: str) -> Run:
        metrics = {}
        for key, path in layout.iter_files(layout.subfolder(folder, layout.METRICS_FOLDER_NAME)):
            metrics[key] = latest_metric_value(key, read_regular(path), path)
        params = _read_key_files(layout.subfolder(folder, layout.PARAMS_FOLDER_NAME))
        tags = _read_key_files(layout.subfolder(folder, layout.TAGS_FOLDER_NAME))
        if not info.run_name and tags.get(RUN_NAME_TAG):
            # MLflow <= 1.29 wrote no run_name; _get_run_from_info takes it from the tag.
            info = info.replace(run_name=tags[RUN_NAME_TAG])
        return Run(info=info, data=RunData(metrics=metrics, params=params, tags=tags))


def _listed_run_info(experiment_id: str, name: str, folder: str) -> RunInfo | None:
    """The info of the run in ``folder`` (named ``name``) of that experiment, as search_runs lists
    it; None for a folder it skips: one without meta.yaml, as MLflow's _list_run_infos skips it
    (MissingConfigException, at debug level: an artifact folder kept in the store has none), and,
    with a warning naming the folder and why, one whose meta.yaml names another experiment (a
    run folder copied there; MLflow skips it with a warning too) or another run id than the
    folder's name (MLflow's search_runs raises "Invalid parent directory" for the whole search;
    listed, it gave an id that get_run did not find).
    """
    path = layout.meta_path(folder)
    if not os.path.isfile(path):
        return None
    info = run_info_from_meta(load_yaml(path), path)
    if info.experiment_id != experiment_id:
        _warn_skipped(folder, f"its meta.yaml records experiment {info.experiment_id}, expected {experiment_id} (the "
                      "experiment the folder is in); MLflow skips it too")
        return None
    if info.run_id != name:
        _warn_skipped(folder, f"its meta.yaml records run id {info.run_id}, expected {name} (the folder's name; get_run "
                      "finds a run by its folder's name only)")
        return None
    return info


def _warn_skipped(folder: str, why: str) -> None:
    # logging is imported here: a training process that never meets such a folder does not load it.
    import logging

    logging.getLogger("trackd.store").warning("Skipping run folder %r: %s.", folder, why)


def _artifact_folder(path: str | None) -> str | None:
    """A list_artifacts path, normalized as LocalArtifactRepository does (os.path.normpath); None for the root."""
    if not path:
        return None
    if type(path) is str:
        path = posixpath.normpath(path)
    # "." is the root; "..", an absolute path or a non-str is refused, as MLflow refuses a path outside.
    return None if path == "." else validate_artifact_path(path)


def _read_key_files(folder: str) -> dict[str, str]:
    """Params or tags: one raw UTF-8 file per key, keys with '/' in subfolders."""
    return {key: read_text(path) for key, path in layout.iter_files(folder)}
