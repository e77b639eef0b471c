"""What ``Client`` reads back: experiments, runs, metric histories, artifact listings and files.

Reads go to ./mlruns directly (``StoreReader``), never through the daemon, in MLflow's shapes and
words. Reads of runs first flush what this process logged (``_flush_for_read``), so what a process
logged is what it reads back while a daemon takes it (with none, they read the store as it is,
warned once); reads of experiments first have the daemon open a store that has no
experiment 0 yet (``_open_new_store``), as MLflow's FileStore makes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NoReturn

from .._mlflow_gaps import CLIENT_HINTS
from ..protocol import GetExperiment
from ..store import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    SEARCH_MAX_RESULTS_DEFAULT,
    Experiment,
    FileInfo,
    Metric,
    PagedList,
    Run,
    StoreReader,
    ViewType,
    page_of,
    page_offset,
    validate_experiment_id,
    validate_max_results,
    validate_run_id,
    validate_view_type,
)
from ..store._layout import experiment_dir, iter_experiment_dirs
from ._config import ClientConfig
from ._lifecycle import ClientState
from ._sender import Sender


class ClientReads:
    """The read methods of ``Client`` (its base)."""

    tracking_uri: str
    config: ClientConfig
    state: ClientState
    _reader: StoreReader
    _sender: Sender

    def __dir__(self) -> list[str]:
        # The names MlflowClient has and this Client leaves out are not offered (tab completion).
        return [name for name in object.__dir__(self) if name not in _LEFT_OUT]

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id; raises ExperimentNotFound."""
        experiment_id = validate_experiment_id(experiment_id)
        self._open_new_store()
        return self._reader.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment with this name, active or deleted (as MLflow's), or None."""
        self._open_new_store()
        return self._reader.get_experiment_by_name(name)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        """Experiments in ``view_type`` that ``filter_string`` keeps, at most ``max_results``, in
        ``order_by``'s order (default: newest first, creation_time DESC then experiment_id).

        MLflow's signature, search grammar (``"name LIKE 'bert-%' and tags.team = 'nlp'"``,
        ``order_by=["name ASC"]``; see _search_parse.py) and pages (the result's ``token`` asks
        for the next page, None on the last). A filter MLflow refuses raises InvalidArgument.
        """
        view = validate_view_type(view_type)
        limit = validate_max_results(max_results, minimum=1)
        offset = page_offset(page_token)
        self._open_new_store()
        return page_of(self._reader.list_experiments(view, filter_string, order_by), offset, limit)

    def get_run(self, run_id: str) -> Run:
        """The run as stored, after flushing what this process logged."""
        self._flush_for_read("get_run")
        return self._reader.get_run(validate_run_id(run_id))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every value logged for ``key``, in file order, after flushing."""
        self._flush_for_read("get_metric_history")
        return self._reader.get_metric_history(validate_run_id(run_id), key)

    def search_runs(
        self,
        experiment_ids: str | Sequence[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        """Runs of these experiments in ``run_view_type`` that ``filter_string`` keeps, at most
        ``max_results``, in ``order_by``'s order (default: newest first), after flushing.

        MLflow's signature, search grammar (``"metrics.acc > 0.9 and params.lr = '0.01'"``,
        ``order_by=["metrics.acc DESC"]``; see _search_parse.py), default order (start_time DESC,
        then run_id) and pages (the result's ``token`` asks for the next page of the same filtered,
        ordered list, None on the last; a sweep's 2,000 trials are two pages of the default
        1,000). A filter MLflow refuses raises InvalidArgument (INVALID_PARAMETER_VALUE).
        """
        view = validate_view_type(run_view_type)
        # FileStore._search_runs refuses only more than the threshold; 0 gives no runs.
        limit = validate_max_results(max_results, minimum=0)
        offset = page_offset(page_token)
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        self._flush_for_read("search_runs")
        return page_of(self._reader.search_runs(ids, view, filter_string, order_by), offset, limit)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly in ``path`` (default: the artifact root), after flushing.

        As MLflow's: FileInfo(path, is_dir, file_size) sorted by path, paths relative to the
        run's artifact root, file_size None for a folder, one level deep; [] for a missing path.
        A run whose artifacts are not on this machine (``s3://``) raises InvalidArgument, as
        download_artifacts does.
        """
        self._flush_for_read("list_artifacts")
        return self._reader.list_artifacts(validate_run_id(run_id), path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str | os.PathLike[str] | None = None) -> str:
        """Copy a run's artifact file or folder to ``dst_path`` (made if missing; default: a new
        temporary folder) after flushing, and return its local path, as MLflow's does.

        ``path="cfg/sub/d.txt"`` gives ``<dst>/d.txt``; a folder gives ``<dst>/<its name>``; an empty
        ``path`` without ``dst_path`` gives the run's artifact folder in the store itself (see
        _downloads.py). A path the run does not have raises ArtifactNotFound (a FileNotFoundError).
        """
        self._flush_for_read("download_artifacts")
        from ._downloads import download_run_artifacts

        return download_run_artifacts(self._reader, validate_run_id(run_id), path, dst_path)

    def _open_new_store(self) -> None:
        """Have the daemon open a store that has no experiment 0 yet, so that it makes "Default".

        MLflow's FileStore makes experiment 0 when it is constructed on a missing root, so its
        get_experiment_by_name("Default") finds it in a new store. Here the daemon makes it when it
        first opens the store: Lightning's MLFlowLogger(experiment_name="Default") found no
        experiment, created one and got ExperimentExists.
        """
        root = self.tracking_uri
        if self.state is not ClientState.OPEN or os.path.isdir(experiment_dir(root, DEFAULT_EXPERIMENT_ID)):
            return
        if next(iter_experiment_dirs(root, include_deleted=True), None) is not None:
            # Not a new store: "Default" deleted or removed for good. Read as it is; asking made
            # these reads fail without a daemon (DaemonUnavailable) where they had read the files.
            return
        # Any experiment request opens the store; this one changes nothing else.
        self._sender.ask(
            "open the store", lambda rid: GetExperiment(request_id=rid, name=DEFAULT_EXPERIMENT_NAME, create=False)
        )

    def _flush_for_read(self, what: str) -> None:
        """Read what this process logged: wait for the daemon to write it, unless none takes it
        (gone, stopped, given up), when the read goes on with one warning (see flush_for_read).
        Refused items stay for flush() (maybe a sibling's)."""
        if self.state is ClientState.OPEN:
            self._sender.flush_for_read(self.config.connect_timeout, what)


class _LeftOut:
    """One of MlflowClient's methods that Client leaves out: getting it raises AttributeError saying
    what to use instead (``CLIENT_HINTS``), where ported code got a bare "'Client' object has no
    attribute 'delete_run'". A class attribute per name, not a ``__getattr__``: a class that has one
    loses CPython's specialized attribute lookups on every access, and a producer's durable
    throughput fell ~10% (bench_throughput, 1 producer). A misspelt name keeps Python's error and
    its "Did you mean"."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> NoReturn:
        named = (owner or type(obj)).__name__
        raise AttributeError(f"{named!r} object has no attribute {self.name!r}: {CLIENT_HINTS[self.name]}", name=self.name, obj=obj)


# The names given a _LeftOut: not one ClientReads has (download_artifacts stays).
_LEFT_OUT = frozenset(name for name in CLIENT_HINTS if not hasattr(ClientReads, name))
for _name in _LEFT_OUT:
    setattr(ClientReads, _name, _LeftOut(_name))
