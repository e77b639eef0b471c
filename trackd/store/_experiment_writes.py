"""Experiments as the writer makes and finds them: a new experiment's folder, and names to ids.

An experiment is built in a staging folder and renamed into place (an MLflow reader never sees
one without its meta.yaml). Finding an experiment by name reads every experiment's meta.yaml, so
``ExperimentNames`` remembers what it found for as long as that meta.yaml is unchanged.
"""

from __future__ import annotations

import os
import time
from itertools import islice
from collections.abc import Callable, Mapping

from ..errors import StoreError
from . import _layout as layout
from ._entities import LIFECYCLE_ACTIVE, Experiment
from ._format import dump_yaml, experiment_to_meta, file_signature, write_file_atomic, write_key_file
from ._reader import StoreReader

# Experiment names remembered with their ids (ExperimentNames.find).
MAX_REMEMBERED_EXPERIMENTS = 10_000


def unused_experiment_id(root: str) -> str:
    """A fresh 18-digit id that names no experiment, active or deleted."""
    experiment_id = layout.new_experiment_id()
    while os.path.exists(layout.experiment_dir(root, experiment_id)) or os.path.exists(
        layout.deleted_experiment_dir(root, experiment_id)
    ):
        experiment_id = layout.new_experiment_id()
    return experiment_id


def build_experiment(
    root: str,
    build_in_staging: Callable[[Callable[[str], None], str], None],
    experiment_id: str,
    name: str,
    artifact_location: str,
    tags: Mapping[str, str],
    now_ms: int,
) -> None:
    """Make the experiment's folder (meta.yaml and tags) through ``build_in_staging``.

    ``artifact_location`` is stored as given, as FileStore stores it: either the one the caller
    gave, once resolve_uri_if_local made a relative path absolute (the client did that:
    layout.resolve_local_uri), or ``layout.experiment_location`` under the store's artifact root.
    """
    folder = layout.experiment_dir(root, experiment_id)
    experiment = Experiment(
        experiment_id=experiment_id,
        name=name,
        artifact_location=artifact_location,
        lifecycle_stage=LIFECYCLE_ACTIVE,
        creation_time=now_ms,
        last_update_time=now_ms,
        tags=dict(tags),
    )

    def fill(staging: str) -> None:
        for key, value in tags.items():
            write_key_file(layout.tag_path(staging, key), value, staging)
        write_file_atomic(layout.meta_path(staging), dump_yaml(experiment_to_meta(experiment)), staging)

    try:
        build_in_staging(fill, folder)
    except FileExistsError:
        if not made_ahead(folder):
            raise  # another writer made it
        # Made ahead by a run's own artifact writes: with a tracking URI set as a path,
        # get_artifact_uri() is one, and a script's os.makedirs(<it>) may run before the daemon
        # made the store (mlruns/0/<run>/artifacts). Completed where it is, meta.yaml last.
        fill(folder)


def made_ahead(folder: str) -> bool:
    """Whether ``folder`` (an experiment's or a run's) exists, as a real folder, without its
    meta.yaml: made by artifact writes through the path get_artifact_uri() gave before the daemon made it."""
    return os.path.isdir(folder) and not os.path.islink(folder) and not os.path.lexists(layout.meta_path(folder))


def make_root(root: str, build_in_staging: Callable[[Callable[[str], None], str], None], artifact_root: str) -> None:
    """Make the store's folder, experiment 0 ("Default") unless it exists (active or deleted), and .trash.

    Experiment 0's location is under ``artifact_root``, as FileStore's _create_default_experiment
    puts it: ``append_to_uri_path(self.artifact_root_uri, "0")``.
    """
    if os.path.exists(root) and not os.path.isdir(root):
        raise StoreError(f"Store root {root!r} is a file, expected a folder.")
    os.makedirs(root, exist_ok=True)
    default_id = layout.DEFAULT_EXPERIMENT_ID
    if not os.path.exists(layout.meta_path(layout.experiment_dir(root, default_id))) and not os.path.exists(
        layout.deleted_experiment_dir(root, default_id)
    ):
        try:
            build_experiment(
                root, build_in_staging, default_id, layout.DEFAULT_EXPERIMENT_NAME,
                layout.experiment_location(artifact_root, default_id), {}, int(time.time() * 1000),
            )
        except FileExistsError:
            pass  # another daemon on this store made it first
    os.makedirs(layout.trash_dir(root), exist_ok=True)


# A store of at most this many experiments is read for a name at once (~5 ms at most): a client
# asks the daemon first in a larger one.
CHEAP_EXPERIMENTS = 64


class ExperimentNames:
    """Active experiments' ids by name, each remembered with its meta.yaml's signature."""

    def __init__(self, root: str, reader: StoreReader) -> None:
        self._root = root
        self._reader = reader
        # Experiment name -> (id, signature of its meta.yaml when the name was read there).
        self._ids: dict[str, tuple[str, tuple[int, int, int]]] = {}

    def find(self, name: str, *, cheap: bool = False) -> str | None:
        """The id of the active experiment with that name, or None.

        Finding a name reads every experiment's meta.yaml (~50-75 us each: 50-75 ms per
        set_experiment with 1,000 experiments, on the writer thread), so a name found is remembered
        with its meta.yaml's signature: while that file is unchanged at the active location the
        name still holds (MLflow's rename rewrites it, delete moves the folder to .trash).
        ``cheap``: None without reading, unless the name is remembered or the store holds at most
        CHEAP_EXPERIMENTS experiments (a client asks the daemon, which remembers, before it reads more).
        """
        cached = self._ids.get(name)
        if cached is not None:
            experiment_id, signature = cached
            if self._signature(experiment_id) == signature:
                return experiment_id
            del self._ids[name]
        if cheap and any(True for _ in islice(layout.iter_experiment_dirs(self._root, include_deleted=False), CHEAP_EXPERIMENTS, None)):
            return None
        for experiment in self._reader.list_experiments():
            if experiment.name == name:
                self.remember(name, experiment.experiment_id)
                return experiment.experiment_id
        return None

    def remember(self, name: str, experiment_id: str) -> None:
        signature = self._signature(experiment_id)
        if signature is None:
            return
        if len(self._ids) >= MAX_REMEMBERED_EXPERIMENTS:
            self._ids.clear()
        self._ids[name] = (experiment_id, signature)

    def _signature(self, experiment_id: str) -> tuple[int, int, int] | None:
        """The signature of the experiment's meta.yaml at the active location; None if there is none."""
        try:
            return file_signature(os.stat(layout.meta_path(layout.experiment_dir(self._root, experiment_id))))
        except OSError:
            return None
