"""``trackd.Client``: MLflow's ``MlflowClient`` for explicit run ids, delivering through the sender.

Every logging method checks its arguments at the call site, builds a record and appends it to the
sender's buffer. Reads (``get_run``, ``search_runs``...) flush first and then read ./mlruns
directly, so what a process logged is what it reads back: they are ``ClientReads``
(``_client_reads.py``), a base of the Client. Artifacts (``log_artifact``, ``log_text``,
``log_image``...) are ``ClientArtifacts`` (``_client_artifacts.py``), its other base.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import (
    ClientClosedError,
    DaemonUnavailable,
    DeliveryError,
    ExperimentExists,
    ExperimentNotFound,
    InvalidArgument,
    ParamChangedError,
    RunNotFound,
    TrackdError,
)
from ..protocol import (
    CREATE_RUN,
    DELETE_TAG,
    METRIC,
    PARAM,
    SET_TERMINATED,
    TAG,
    CreateExperiment,
    ExperimentReply,
    GetExperiment,
)
from ..store._entities import RUN_NAME_TAG
from ..store._experiment_writes import ExperimentNames
from ..store._layout import artifact_uri_for_run, experiment_location, resolve_local_uri
from ..store import (
    DEFAULT_EXPERIMENT_ID,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    StoreReader,
    check_new_experiment,
    mapping_items,
    validate_experiment_id,
    validate_experiment_name,
    validate_key,
    validate_metric_value,
    validate_new_run_id,
    validate_param_value,
    validate_run_id,
    validate_run_status,
    validate_run_time,
    validate_step,
    validate_store_root,
    validate_tag_value,
    validate_timestamp,
)
from ._tag_limits import RUN_TAGS_INSTEAD, require_tag_value_fits, require_tags_fit
from ._long_values import Truncations
from ._config import ClientConfig, require_folder_path, resolve_store_uri, store_root_of
from . import _lifecycle
from ._lifecycle import LIVE_CLIENTS, SENDERS, ClientState, install_sigterm_handler, prepare_multiprocessing_child
from ._names import random_id, random_run_name
from ._operations import RunOperations, settle
from ._outbox import FlushReport
from ._client_artifacts import ClientArtifacts
from ._client_reads import ClientReads
from ._sender import Sender

_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1
_OPEN = ClientState.OPEN  # compared in every set_tag and log_param: an enum member read through its class costs ~70 ns
_time_ns = time.time_ns

USER_TAG = "mlflow.user"
# MLflow's client splits a log_batch's params into chunks of this many (MAX_PARAMS_TAGS_PER_BATCH).
MLFLOW_PARAMS_PER_CHUNK = 100


class Client(ClientArtifacts, ClientReads):
    """Log to runs by id and read them back, like ``mlflow.MlflowClient``.

    Calls return as soon as the event is buffered; ``flush()`` waits until it is in the store.
    The Clients of one store and config share one sender (buffer, thread, connection).
    """

    def __init__(self, tracking_uri: str | os.PathLike[str] | None = None, *, config: ClientConfig | None = None) -> None:
        if tracking_uri is None:
            # As MlflowClient(): the URI set_tracking_uri() gave, else the environment's.
            from ._fluent import get_tracking_uri

            tracking_uri = get_tracking_uri()
        # The store's URI in MLflow's form (see resolve_store_uri), under which the daemon makes
        # this client's new experiments; tracking_uri is its folder.
        self.artifact_root = resolve_store_uri(tracking_uri)
        self.tracking_uri = validate_store_root(store_root_of(self.artifact_root))
        require_folder_path(self.tracking_uri)
        self.config = config if config is not None else ClientConfig.from_env()
        self.state = ClientState.OPEN
        # Set once close() has finished; RunOperations.wait() waits for a close another thread began.
        self._close_done = threading.Event()
        self._closing_pid = 0
        # One sender per store and config, shared by its Clients (see _lifecycle.SENDERS).
        self._sender_key = (self.tracking_uri, self.artifact_root, *self.config._values())
        self._reader = StoreReader(self.tracking_uri)
        # Active experiments' ids by name, read from the store (see get_or_create_experiment).
        self._experiment_names = ExperimentNames(self.tracking_uri, self._reader)
        self._good_keys: set[str] = set()
        self._known_runs: set[str] = set()
        self._params: dict[tuple[str, str], str] = {}
        with _lifecycle.SENDERS_LOCK:
            sender = SENDERS.get(self._sender_key)
            if sender is None:
                sender = SENDERS[self._sender_key] = Sender(self.config, self.tracking_uri, self.artifact_root)
            # In a forked child the sender calls _after_fork_in_child of its users, after it
            # reset itself (a fork hook per Client would pile up with clients made per call).
            sender.users.add(self)
        self._sender = sender
        LIVE_CLIENTS.add(self)
        install_sigterm_handler()
        prepare_multiprocessing_child()

    def __repr__(self) -> str:
        return f"<trackd.Client {self.tracking_uri!r} {self.state.name}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- experiments ------------------------------------------------------------------------------

    def create_experiment(self, name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
        """Create an experiment and return its id; raises ExperimentExists if the name is taken."""
        self._require_open()
        if artifact_location is not None:  # resolved in this process's folder, as MLflow's FileStore does
            artifact_location = resolve_local_uri(str(artifact_location))
        # As the daemon checks them (a tag value not UTF-8 failed every connection's request, for ever).
        name, str_tags = check_new_experiment(name, artifact_location, {k: str(v) for k, v in (tags or {}).items()})
        require_tags_fit(str_tags, f"new experiment {name!r}", "expected fewer or shorter tags")
        try:
            reply = self._sender.ask(
                f"create experiment {name!r}",
                lambda rid: CreateExperiment(request_id=rid, name=name, artifact_location=artifact_location, tags=str_tags),
            )
        except DeliveryError as exc:
            # The daemon's ErrorReply carries only its message ("Experiment 'x' already exists.").
            if self._reader.get_experiment_by_name(name) is not None:
                raise ExperimentExists(str(exc)) from None
            raise
        assert isinstance(reply, ExperimentReply) and reply.experiment_id is not None
        return reply.experiment_id

    def get_or_create_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if it does not exist yet (what set_experiment needs).

        An active experiment of that name is read from the store, as MLflow's set_experiment does
        (get_experiment_by_name); only a name with none goes to the daemon, which assigns new ids.
        """
        self._require_open()
        name = validate_experiment_name(name)
        # Asked first, a daemon that was stopped (SIGSTOP) or hung failed every new process of a job
        # whose experiment existed, where the same job started by experiment id logged and spooled.
        # The daemon builds an experiment aside and renames it into place: one it is making is read
        # here whole or not at all, and then asked for. A deleted experiment holding the name is
        # the daemon's to refuse, in MLflow's words (set_experiment says it as MLflow does). A store
        # of many experiments is read only if the daemon does not answer: ~50 ms at 1,000, in each
        # process of a suite, where the daemon answers from what it remembers.
        found = self._experiment_names.find(name, cheap=True)
        if found is not None:
            return found
        try:
            reply = self._sender.ask(
                f"get or create experiment {name!r}", lambda rid: GetExperiment(request_id=rid, name=name, create=True)
            )
        except DaemonUnavailable:
            if (found := self._experiment_names.find(name)) is None:
                raise
            return found
        assert isinstance(reply, ExperimentReply) and reply.experiment_id is not None
        return reply.experiment_id

    # -- runs ---------------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str | None = None,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        *,
        run_id: str | None = None,
        owner: bool | None = None,
    ) -> Run:
        """Create a run (without a round trip: the id is made here) and return it.

        With ``run_id``, the run gets that id; if it exists already this attaches to it, so every
        rank of a distributed job may call this with one id, in any order. ``owner``: whether the
        run is this caller's (rank 0's), so that it takes this call's name, tags and start time
        even if another process's create of that id reaches the store first; False only makes sure
        it exists. A run created or found in this process before (by any Client of its store, or
        its parent's, before a fork) is never the caller's; by default (None) neither is one in the
        store already.
        """
        self._require_open()
        experiment_id = validate_experiment_id(experiment_id if experiment_id is not None else DEFAULT_EXPERIMENT_ID)
        if run_id is not None:
            run_id = validate_new_run_id(run_id, self._run_in_store)
            sender = self._sender
            seen = (self._known_runs, sender.creations, sender.inherited_creations)
            if owner is not False and any(run_id in runs for runs in seen):
                # Created (or found) in this process before: MLflow's "MlflowClient().create_run(...,
                # run_name=...), then start_run(run_id=...)" gave the run start_run's random name.
                owner = False
            elif owner is None:
                owner = self._reader.find_run(run_id) is None
        else:
            run_id = random_id()
        start_ms = _now_ms() if start_time is None else validate_run_time("start_time", run_id, start_time)
        str_tags = self._check_tags(tags or {})
        tag_name = str_tags.get(RUN_NAME_TAG)
        if run_name is not None and tag_name is not None and run_name != tag_name:
            raise InvalidArgument(
                f"Both run_name={run_name!r} and tag {RUN_NAME_TAG}={tag_name!r} were given; they must agree."
            )
        name = run_name or tag_name or random_run_name()
        str_tags[RUN_NAME_TAG] = require_tag_value_fits(RUN_NAME_TAG, validate_tag_value(RUN_NAME_TAG, name))
        require_tags_fit(str_tags, f"new run {run_id} ({RUN_NAME_TAG} included)", RUN_TAGS_INSTEAD)
        # MlflowClient.create_run takes the user from the mlflow.user tag, else "unknown".
        user_id = str_tags.get(USER_TAG, "unknown")
        artifact_location = self._artifact_location(experiment_id)
        creation = (CREATE_RUN, run_id, experiment_id, user_id, name, start_ms, str_tags, owner is not False)
        # Queued first, then recorded: a flush in another thread forgets the creations it saw
        # before its barrier, which must include this record once it is listed.
        self._sender.submit(creation)
        self._sender.creations[run_id] = creation
        self._known_runs.add(run_id)
        info = RunInfo(
            run_id=run_id, experiment_id=experiment_id, run_name=name, user_id=user_id, status=RunStatus.RUNNING.name,
            start_time=start_ms, end_time=None, artifact_uri=artifact_uri_for_run(artifact_location, run_id),
            lifecycle_stage="active",
        )
        return Run(info=info, data=RunData(metrics={}, params={}, tags=dict(str_tags)))

    def set_terminated(self, run_id: str, status: str | int = "FINISHED", end_time: int | None = None) -> None:
        """End a run with MLflow's status (FINISHED, FAILED, KILLED...)."""
        self._terminate(run_id, status, end_time, keep_failure=False)

    def _terminate(
        self, run_id: str, status: str | int, end_time: int | None, *, keep_failure: bool, shared: bool = False
    ) -> None:
        """set_terminated; with ``keep_failure``, a run already FAILED or KILLED stays so (the ends
        the fluent API makes by itself, of a run another rank or worker may have failed).

        ``shared``: the daemon writes the end only if no other live process owns the run then (a
        job resuming a RUNNING run co-owns it: the last owner to end it ends it). The fluent
        API's owner ends are (end_run() without a status, a block left normally, interpreter
        exit, SIGTERM); an exception leaving a block is not: it fails the run from any process.
        """
        self._check_run(run_id)
        code = int(validate_run_status(status))
        end_ms = _now_ms() if end_time is None else validate_run_time("end_time", run_id, end_time)
        self._sender.submit((SET_TERMINATED, run_id, code, end_ms, keep_failure, shared))

    # -- logging: the hot path ------------------------------------------------------------------

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None,
        synchronous: bool | None = None,
    ) -> RunOperations | None:
        """Log one metric value; returns once it is buffered (about a microsecond), or with
        ``synchronous=True`` once it is in the store (a flush); ``synchronous=False`` returns a
        ``RunOperations`` whose ``wait()`` flushes, as MLflow's does."""
        try:
            if run_id not in self._known_runs:
                self._check_run(run_id)
            if key not in self._good_keys:
                self._check_key(key, "metric")
        except TypeError:  # an unhashable run id or key (a list): say which, as for any bad value
            self._check_run(run_id)
            self._check_key(key, "metric")
            raise
        if type(value) is not float:
            value = validate_metric_value(key, value)
        if step is None:
            step = 0
        elif type(step) is not int or not _MIN_INT64 <= step <= _MAX_INT64:
            step = validate_step(key, step)
        timestamp = _time_ns() // 1_000_000 if timestamp is None else validate_timestamp(key, timestamp)
        sender = self._sender
        buffer = sender.buffer
        buffer.append((METRIC, run_id, key, value, timestamp, step))
        if len(buffer) >= sender.wake_at:
            sender.wake()
        if synchronous is not None:
            return settle(self, synchronous)
        return None

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Log several metric values with one step and timestamp (all checked before any is buffered)."""
        if type(run_id) is not str or run_id not in self._known_runs:
            self._check_run(run_id)
        items = metrics.items() if type(metrics) is dict else mapping_items(metrics, "metrics")
        if step is None:
            step = 0
        elif type(step) is not int or not _MIN_INT64 <= step <= _MAX_INT64:
            step = validate_step(next(iter(metrics), ""), step)
        if timestamp is None:
            timestamp = _time_ns() // 1_000_000
        else:
            timestamp = validate_timestamp(next(iter(metrics), ""), timestamp)
        good_keys = self._good_keys
        records = []
        for key, value in items:
            if key not in good_keys:
                self._check_key(key, "metric")
            if type(value) is not float:
                value = validate_metric_value(key, value)
            records.append((METRIC, run_id, key, value, timestamp, step))
        sender = self._sender
        buffer = sender.buffer
        buffer.extend(records)
        if len(buffer) >= sender.wake_at:
            sender.wake()

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        """Log a param (immutable once logged); returns ``value`` as MLflow does (a
        ``RunOperations`` with ``synchronous=False``)."""
        self._check_run(run_id)
        self._submit_param(run_id, key, value)
        operations = settle(self, synchronous)
        return value if operations is None else operations

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> RunOperations | None:
        """Set a run tag (tags may change)."""
        self._check_run(run_id)
        key = self._check_key(key, "tag")
        # FileStore.set_tag checks no value length (only log_batch truncates): stored whole, up to trackd's record bound.
        self._sender.submit((TAG, run_id, key, require_tag_value_fits(key, validate_tag_value(key, str(value)))))
        return settle(self, synchronous)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a run tag; flush() reports it if the tag did not exist."""
        self._check_run(run_id)
        self._sender.submit((DELETE_TAG, run_id, self._check_key(key, "tag")))

    def log_batch(
        self, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = (),
        synchronous: bool | None = None,
    ) -> RunOperations | None:
        """Log metrics (``Metric``-like: key, value, timestamp, step; see _metric_links.py), params and tags
        (key, value) together. Everything is checked, then buffered in one append: a bad item logs nothing, and
        a Ctrl-C while the call waits for room (TRACKD_ON_FULL=block) finds the whole batch logged, never part of it."""
        self._check_run(run_id)
        from ._metric_links import require_unlinked  # loaded by the first log_batch, not by start_run

        records: list[tuple[Any, ...]] = []
        seen_params: dict[str, str] = {}
        chunk_keys: set[str] = set()
        repeated: list[str] = []
        changed: tuple[str, str, str] | None = None
        truncations = Truncations()
        for index, param in enumerate(params):
            key = self._check_key(param.key, "param")
            value = validate_param_value(key, truncations.fit("param", key, str(param.value), MAX_PARAM_VALUE_LENGTH))
            if index % MLFLOW_PARAMS_PER_CHUNK == 0:
                chunk_keys = set()
            # MLflow's client sends params in chunks of 100, and its FileStore refuses a key twice in
            # one chunk, even with the same value; in a later chunk the same value is written again
            # (nothing changes) and another is a changed param.
            if key in chunk_keys:
                repeated.append(key)
            elif key in seen_params:
                if seen_params[key] != value and changed is None:
                    changed = (key, seen_params[key], value)
                continue
            chunk_keys.add(key)
            seen_params[key] = value
            records.append((PARAM, run_id, key, value))
        for metric in metrics:
            key = self._check_key(require_unlinked(metric).key, "metric")
            step = validate_step(key, metric.step if metric.step is not None else 0)
            ts = _now_ms() if metric.timestamp is None else validate_timestamp(key, metric.timestamp)
            records.append((METRIC, run_id, key, validate_metric_value(key, metric.value), ts, step))
        for tag in tags:
            key = self._check_key(tag.key, "tag")
            records.append((TAG, run_id, key, validate_tag_value(key, truncations.fit("tag", key, str(tag.value), MAX_TAG_VALUE_LENGTH))))
        if repeated:
            # MLflow's FileStore.log_batch (_validate_param_keys_unique), once every item is valid: a key
            # given twice is refused even with the same value, each repeat listed, before any value is
            # checked against the run's. A metric key twice logs both points, a tag key twice keeps the last.
            raise InvalidArgument(
                f"Duplicate parameter keys have been submitted: {repeated}. Please ensure the request contains "
                "only one param value per param key."
            )
        if changed is not None:
            # Where MLflow wrote the earlier chunks first, nothing of this batch is logged.
            raise _param_changed(run_id, *changed)
        for key, value in seen_params.items():
            self._check_param_unchanged(run_id, key, value)
        truncations.warn()
        for key, value in seen_params.items():
            self._params[(run_id, key)] = value
        sender = self._sender  # one append (a record at a time, a Ctrl-C in the on-full wait logged part of it)
        sender.buffer.extend(records)
        if len(sender.buffer) >= sender.wake_at:
            sender.wake()
        return settle(self, synchronous)

    # -- delivery ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> FlushReport:
        """Wait until everything logged so far is written to the store.

        Raises DeliveryError naming items the daemon refused (a param another process set
        differently, a tag that did not exist...), FlushTimeout if ``timeout`` seconds pass first.
        """
        # After close() the sender thread is gone, so a flush barrier would never be answered.
        self._require_open()
        creations = self._sender.creations
        created = list(creations)
        report = self._sender.flush(timeout)
        for run_id in created:
            creations.pop(run_id, None)
        return report

    def pending(self) -> int:
        """Events accepted but not yet written to the store."""
        return self._sender.pending()

    def stats(self) -> dict[str, object]:
        """Delivery counters: buffered, unacknowledged, dropped, rejected."""
        return self._sender.stats()

    def close(self, timeout: float | None = None) -> None:
        """Flush (at most ``timeout``; by default while the daemon acknowledges, up to TRACKD_EXIT_TIMEOUT
        without a reply) and stop; the sender shared with the Clients of its store stops with the last. Idempotent."""
        if self.state is ClientState.CLOSED:
            return
        self._closing_pid = os.getpid()  # first: a wait() that finds the client closed waits for this close
        self.state = ClientState.CLOSED
        try:
            # Every logging call now takes the slow path, which raises ClientClosedError.
            self._known_runs.clear()
            sender = self._sender
            with _lifecycle.SENDERS_LOCK:
                sender.users.discard(self)
                shared = bool(sender.users) and not sender.closed
                if not shared and SENDERS.get(self._sender_key) is sender:
                    del SENDERS[self._sender_key]
            if shared:
                # Other open Clients of this store share the sender: deliver what was accepted, keep it.
                sender.flush_or_warn(self.config.exit_timeout if timeout is None else timeout, patient=timeout is None)
                return
            _lifecycle.close_sender(sender, timeout)
        finally:
            self._close_done.set()

    def _wait_closed(self) -> None:
        """Return once close() has finished in whichever thread (not in a fork's child: none finishes it there)."""
        if self._closing_pid == os.getpid():
            self._close_done.wait()

    # -- helpers ----------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.state is ClientState.CLOSED:
            raise ClientClosedError("Cannot use a trackd client once it has been closed.")

    def _check_key(self, key: Any, kind: str) -> str:
        if type(key) is str and key in self._good_keys:
            return str(key)
        checked = validate_key(key, kind=kind)
        if len(self._good_keys) < 100_000:
            self._good_keys.add(checked)
        return checked

    def _check_tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for key, value in tags.items():
            key = self._check_key(key, "tag")
            checked[key] = require_tag_value_fits(key, validate_tag_value(key, str(value)))
        return checked

    def _check_run(self, run_id: str) -> None:
        """Logging to a run this client neither created nor can find in the store is a caller mistake."""
        if self.state is not _OPEN:
            if _lifecycle.closed_at_exit:
                # Exit closed this client while another thread logs (a system-metrics monitor): the
                # record goes to the stopped sender, which counts it as late for exit's one line.
                return
            self._require_open()
        if type(run_id) is str and run_id in self._known_runs:
            return
        run_id = validate_run_id(run_id)
        # Created through this sender (by another Client of this store, maybe one since dropped,
        # or by the parent before a fork, sent again now; creating an existing run changes
        # nothing): its creation goes ahead of these points in the same buffer.
        if not self._sender.claim_inherited_creation(run_id) and self._reader.find_run(run_id) is None:
            raise RunNotFound(f"Run {run_id!r} not found in {self.tracking_uri}; create it first or pass an existing run id.")
        self._known_runs.add(run_id)

    def _learn_stored_params(self, run_id: str) -> None:
        """Remember the params run ``run_id`` holds in the store, so a changed one raises at the call.

        For a run this process reopens (``start_run(run_id=...)`` of an ended run: a requeued job
        logging its hyperparameters again), as MLflow's does: a param that differs was accepted,
        the script went on and exited 0, and only a line on stderr (the daemon's refusal) said so.
        Read once, at the resume (never by a logging call). Not for a live run a rank or a Client
        attaches to: its params are being logged by others meanwhile, and the daemon, which alone
        sees them all, refuses the second value (one warning line, flush() raises DeliveryError).
        """
        try:
            stored = self._reader.get_run_params(run_id)
        except (TrackdError, OSError):
            return  # gone or unreadable meanwhile: the daemon still checks
        for key, value in stored.items():
            self._params.setdefault((run_id, key), value)

    def _run_in_store(self, run_id: str) -> bool:
        return self._reader.find_run(run_id) is not None

    def _after_fork_in_child(self) -> None:
        """The child's first log to a run its parent created resends that run's creation first."""
        self._known_runs.difference_update(self._sender.inherited_creations)

    def _check_param_unchanged(self, run_id: str, key: str, value: str) -> None:
        previous = self._params.get((run_id, key))
        if previous is not None and previous != value:
            raise _param_changed(run_id, key, previous, value)

    def _submit_param(self, run_id: str, key: str, value: Any) -> None:
        key = self._check_key(key, "param")
        text = str(value)
        # Only a value past the limit pays for the truncation's bookkeeping (~270 ns a call).
        truncations = Truncations() if len(text) > MAX_PARAM_VALUE_LENGTH else None
        if truncations is not None:
            text = truncations.fit("param", key, text, MAX_PARAM_VALUE_LENGTH)
        text = validate_param_value(key, text)
        self._check_param_unchanged(run_id, key, text)
        if truncations is not None:
            truncations.warn()
        self._params[(run_id, key)] = text
        self._sender.submit((PARAM, run_id, key, text))

    def _artifact_location(self, experiment_id: str) -> str:
        try:
            return self._reader.artifact_location_for_new_run(experiment_id)
        except ExperimentNotFound:
            if experiment_id != DEFAULT_EXPERIMENT_ID:
                raise
            # Experiment 0 is made by the daemon when it first opens a new store, under the
            # artifact root this client's Hello gives it.
            return experiment_location(self.artifact_root, DEFAULT_EXPERIMENT_ID)


def _now_ms() -> int:
    return _time_ns() // 1_000_000


def _param_changed(run_id: str, key: str, previous: str, value: str) -> ParamChangedError:
    """MLflow's message (FileStore._validate_new_param_value), raised here at the call site."""
    return ParamChangedError(
        f"Changing param values is not allowed. Param with key={key!r} was already logged with "
        f"value={previous!r} for run ID={run_id!r}. Attempted logging new value {value!r}."
    )
