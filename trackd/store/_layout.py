"""Every file and folder name of an MLflow ``./mlruns`` store, and the only place that joins store paths.

The layout is MLflow 3.17.2's ``FileStore`` (``mlflow/store/tracking/file_store.py``)::

    <root>/.trash/<experiment_id>/...          deleted experiments, moved here whole
    <root>/<experiment_id>/meta.yaml
    <root>/<experiment_id>/tags/<key>          experiment tags
    <root>/<experiment_id>/<run_id>/meta.yaml
    <root>/<experiment_id>/<run_id>/{metrics,params,tags}/<key>   keys may contain '/'
    <root>/<experiment_id>/<run_id>/artifacts/...
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

META_DATA_FILE_NAME = "meta.yaml"
METRICS_FOLDER_NAME = "metrics"
PARAMS_FOLDER_NAME = "params"
TAGS_FOLDER_NAME = "tags"
ARTIFACTS_FOLDER_NAME = "artifacts"
TRASH_FOLDER_NAME = ".trash"
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

# MLflow's RESERVED_EXPERIMENT_FOLDERS: children of an experiment dir that are never runs.
RESERVED_EXPERIMENT_FOLDERS = frozenset({"tags", "datasets", "traces", "models"})
# FileStore._get_active_experiments skips `models` (the model registry's folder) at the root.
MODEL_REGISTRY_FOLDER_NAME = "models"
# MLflow's _is_valid_run_directory: "A run dir must contain the metrics/, params/ and artifacts/ directories".
REQUIRED_RUN_FOLDERS = (METRICS_FOLDER_NAME, PARAMS_FOLDER_NAME, ARTIFACTS_FOLDER_NAME)
RUN_FOLDERS = (METRICS_FOLDER_NAME, PARAMS_FOLDER_NAME, TAGS_FOLDER_NAME, ARTIFACTS_FOLDER_NAME)

EXPERIMENT_ID_WIDTH = 18
TEMP_PREFIX = ".trackd-"
TEMP_FILE_SUFFIX = ".tmp"
# MLflow's LocalArtifactRepository uploads to a temp name with this prefix (_TEMP_ARTIFACT_PREFIX)
# and its list_artifacts leaves such names out.
MLFLOW_ARTIFACT_TEMP_PREFIX = ".artifact.uploading."


def new_experiment_id() -> str:
    """A fresh experiment id by MLflow's _generate_unique_integer_id: always 18 digits, no leading 0."""
    import uuid  # here, not at the top: client processes import this module and never make experiment ids

    digits = str(uuid.uuid4().int)[-EXPERIMENT_ID_WIDTH:]
    # MLflow takes the last 18 digits of uuid4().int and appends a random digit for each leading
    # "0", so that int() keeps 18 digits: the effect is 18 random digits, the first not 0.
    return str(1 + int.from_bytes(os.urandom(4), 'big') % 9) + digits[1:]


def experiment_dir(root: str, experiment_id: str) -> str:
    """The folder of an active experiment."""
    return os.path.join(root, experiment_id)


def trash_dir(root: str) -> str:
    """The folder that holds deleted experiments."""
    return os.path.join(root, TRASH_FOLDER_NAME)


def deleted_experiment_dir(root: str, experiment_id: str) -> str:
    """The folder of an experiment after MLflow's delete_experiment moved it to .trash."""
    return os.path.join(root, TRASH_FOLDER_NAME, experiment_id)


def meta_path(folder: str) -> str:
    """The meta.yaml of an experiment or run folder."""
    return os.path.join(folder, META_DATA_FILE_NAME)


def run_dir(experiment_folder: str, run_id: str) -> str:
    """The folder of a run inside its experiment folder."""
    return os.path.join(experiment_folder, run_id)


def subfolder(folder: str, name: str) -> str:
    """A named child folder of an experiment or run folder (one of RUN_FOLDERS, or tags/)."""
    return os.path.join(folder, name)


def metric_path(run_folder: str, key: str) -> str:
    """The metric file; a key with '/' lives in subfolders, as MLflow stores it."""
    return os.path.join(run_folder, METRICS_FOLDER_NAME, key)


def param_path(run_folder: str, key: str) -> str:
    """The param file of a run."""
    return os.path.join(run_folder, PARAMS_FOLDER_NAME, key)


def tag_path(folder: str, key: str) -> str:
    """The tag file of a run or an experiment (both keep tags in ``tags/``)."""
    return os.path.join(folder, TAGS_FOLDER_NAME, key)


def artifact_path(artifacts_root: str, relative_path: str) -> str:
    """A file under an artifact root; relative_path is validated POSIX (validate_artifact_path)."""
    return os.path.join(artifacts_root, *relative_path.split("/"))


def temp_file_path(folder: str) -> str:
    """A fresh hidden temp file name in ``folder``, for write-then-os.replace."""
    return os.path.join(folder, f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_FILE_SUFFIX}")


def staging_dir_path(root: str) -> str:
    """A fresh folder name at the root in which a new experiment or run is built before os.rename.

    MLflow cannot see it: ``FileStore._get_active_experiments`` keeps only the root's subdirs that
    ``not exp.endswith(FileStore.TRASH_FOLDER_NAME)``, so a name ending in ".trash" is skipped by
    search_experiments, search_runs and the run lookup alike. A temp dir *inside* an experiment
    would not be: ``_list_run_infos`` reads the meta.yaml of every non-reserved child, and a run
    whose meta.yaml is visible before its folder is in place crashes ``search_runs``.
    """
    return os.path.join(root, f"{TEMP_PREFIX}{os.urandom(8).hex()}{TRASH_FOLDER_NAME}")


def is_staging_dir_name(name: str) -> bool:
    """Whether a root entry's name is one staging_dir_path() makes."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TRASH_FOLDER_NAME) and len(name) == len(TEMP_PREFIX) + 16 + len(TRASH_FOLDER_NAME)


def artifact_uri_for_run(artifact_location: str, run_id: str) -> str:
    """MLflow's ``append_to_uri_path(artifact_location, run_id, "artifacts")``: a run's ``artifact_uri``."""
    return append_to_uri_path(artifact_location, run_id, ARTIFACTS_FOLDER_NAME)


def experiment_location(artifact_root: str, experiment_id: str) -> str:
    """A new experiment's ``artifact_location`` when none is given: FileStore's
    ``append_to_uri_path(self.artifact_root_uri, str(experiment_id))``."""
    return append_to_uri_path(artifact_root, experiment_id)


def append_to_uri_path(uri: str, *paths: str) -> str:
    """MLflow's ``append_to_uri_path`` (mlflow/utils/uri.py): ``paths`` joined to the URI's path.

    A plain path stays a plain path; a URI is taken apart and put together again, so MLflow's
    ``file:/x`` gives ``file:///x/...`` (urlunparse writes the empty host of a ``file:`` URI).
    """
    path = ""
    for subpath in paths:
        path = _join_posix_paths(path, subpath)
    parsed = urllib.parse.urlparse(uri)
    if not parsed.scheme:
        return _join_posix_paths(uri, path)
    prefix = ""
    if not parsed.path.startswith("/"):
        # MLflow's workaround: urlunparse would make a relative path absolute.
        prefix = parsed.scheme + ":"
        parsed = parsed._replace(scheme="")
    return prefix + urllib.parse.urlunparse(parsed._replace(path=_join_posix_paths(parsed.path, path)))


def _join_posix_paths(prefix: str, suffix: str) -> str:
    # MLflow's _join_posixpaths_and_append_absolute_suffixes: an absolute suffix is appended too.
    if not prefix:
        return suffix
    return posixpath.join(prefix, suffix.lstrip(posixpath.sep))


def path_to_file_uri(path: str) -> str:
    """MLflow's path_to_local_file_uri: ``pathlib.Path(os.path.abspath(path)).as_uri()``."""
    return Path(os.path.abspath(path)).as_uri()


def resolve_local_uri(uri: str) -> str:
    """MLflow's ``resolve_uri_if_local`` on POSIX, in the caller's working folder: a relative path
    becomes an absolute one and a relative ``file:`` URI an absolute URI (its path written as is,
    not percent-encoded, as MLflow's urlunsplit writes it); an absolute path, an absolute ``file:``
    URI and any other scheme stay as they are. The client calls it: the daemon's working folder is ``/``."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "":
        return uri if os.path.isabs(uri) else Path.cwd().joinpath(uri).as_posix()
    if parsed.scheme == "file" and parsed.netloc == "" and not parsed.path.startswith("/"):
        absolute = Path.cwd().joinpath(urllib.parse.unquote(parsed.path)).as_posix()
        return urllib.parse.urlunsplit(("file", "", absolute, parsed.query, parsed.fragment))
    return uri


def file_uri_to_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI (or of a plain path), None for any other scheme."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "":
        return os.path.abspath(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return urllib.parse.unquote(parsed.path)  # url2pathname on POSIX, without importing urllib.request


def is_experiment_folder_name(name: str) -> bool:
    """Whether a child of the root can be an experiment, by MLflow's _get_active_experiments rule."""
    # Our own staging folders (".trackd-*.trash") are covered by the ".trash" suffix rule.
    return not name.endswith(TRASH_FOLDER_NAME) and name != MODEL_REGISTRY_FOLDER_NAME


def iter_experiment_dirs(root: str, *, include_deleted: bool, include_active: bool = True) -> Iterator[tuple[str, str]]:
    """(experiment_id, folder) for every experiment folder, active first, then those in .trash."""
    if include_active:
        for name in sorted(_list_dirs(root)):
            if is_experiment_folder_name(name):
                yield name, os.path.join(root, name)
    if include_deleted:
        trash = trash_dir(root)
        for name in sorted(_list_dirs(trash)):
            yield name, os.path.join(trash, name)


def iter_run_dirs(experiment_folder: str) -> Iterator[tuple[str, str]]:
    """(run_id, folder) for every child folder of an experiment that is not a reserved folder."""
    for name in sorted(_list_dirs(experiment_folder)):
        if name not in RESERVED_EXPERIMENT_FOLDERS and not name.startswith(TEMP_PREFIX):
            yield name, os.path.join(experiment_folder, name)


def is_valid_run_dir(run_folder: str) -> bool:
    """MLflow's _is_valid_run_directory: metrics/, params/ and artifacts/ all exist."""
    return all(os.path.isdir(os.path.join(run_folder, name)) for name in REQUIRED_RUN_FOLDERS)


def find_run_dir(root: str, run_id: str) -> tuple[str, str] | None:
    """(experiment_id, run folder) of a run, scanning experiments as MLflow's _find_run_root does."""
    for experiment_id, folder in iter_experiment_dirs(root, include_deleted=True):
        candidate = run_dir(folder, run_id)
        if is_valid_run_dir(candidate):
            return experiment_id, candidate
    return None


def iter_files(folder: str) -> Iterator[tuple[str, str]]:
    """(key, path) for every file below ``folder``; keys use '/' for subfolders, as MLflow's keys do."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        relative = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            key = name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}"
            yield key, os.path.join(dirpath, name)


def list_children(folder: str) -> list[tuple[str, bool]]:
    """(name, is_dir) for the direct children of a folder, sorted by name; [] if it is missing."""
    try:
        with os.scandir(folder) as entries:
            return sorted((entry.name, entry.is_dir()) for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def join_relative(relative_path: str | None, name: str) -> str:
    """The POSIX relative path ``relative_path/name`` as list_artifacts reports it."""
    return name if not relative_path else f"{relative_path}/{name}"


def _list_dirs(folder: str) -> list[str]:
    return [name for name, is_dir in list_children(folder) if is_dir]
