"""MLflow's fluent API: module functions that log to the active run of this process.

Each function delegates to the process's current ``Client`` (one per tracking URI), as each httpx
``_api`` function calls ``request()``. A log call with no active run starts one, as MLflow's does;
interpreter exit ends it FINISHED (FAILED after an uncaught exception, KILLED after Ctrl-C) and
waits, boundedly, for delivery. Here: the client, each thread's stack of active runs, ending runs
and the metric calls; ``start_run`` is in ``_run_start.py``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import DeliveryError, InvalidArgument
from . import _lifecycle, _lineage
from ._lifecycle import EXIT_HOOKS, ClientState
from ._operations import RunOperations, settle

if TYPE_CHECKING:
    from ..store import Experiment, Run, RunData, RunInfo
    from ._client import Client

_lock = threading.RLock()
_tracking_uri: str | None = None
_client: Client | None = None
_experiment_id: str | None = None


# A thread's stack of active runs (``runs``) and the run it started first and so ended last
# (``last``): as MLflow 3, each thread starts, ends and nests its own runs (a sweep running trials
# in threads got one chain of nested runs, each trial's points in another's run). A plain local,
# not a subclass with __init__: reading it is half the cost (~35 against ~70 ns), and every fluent
# log call reads it.
_here = threading.local()
# Every thread's stack, for what concerns them all: the main thread's run is where a thread that
# never started one logs (``last`` None), and exit and SIGTERM end the runs of every thread.
_stacks: dict[threading.Thread, list[ActiveRun]] = {}
# The main thread's run when exit or SIGTERM began ending the runs: where a thread with no run of
# its own logs from then on (see _logging_run).
_run_ended_at_exit: ActiveRun | None = None
# The main thread's last run once it has none (it ended its runs): where another thread with no
# run of its own logs until the main thread starts the next. A monitoring thread logging across a
# sweep's back-to-back runs started a run of its own in the gap, and logged there for ever after.
_last_main_run: ActiveRun | None = None


def _thread_runs() -> list[ActiveRun]:
    """This thread's stack of active runs, made on its first use."""
    try:
        return _here.runs  # type: ignore[no-any-return]
    except AttributeError:
        pass
    runs: list[ActiveRun] = []
    _here.runs, _here.last = runs, None
    with _lock:
        for thread in [t for t, stack in _stacks.items() if not stack and not t.is_alive()]:
            del _stacks[thread]
        _stacks[threading.current_thread()] = runs
    return runs

# ClientState.OPEN read through the class costs ~70 ns on Python 3.11 (an enum member is a
# descriptor there), a tenth of a logging call: the hot paths below compare with this alias.
_OPEN = ClientState.OPEN

# MLflow's run status names, which end_run() takes (RunStatus's names).
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


class ActiveRun:
    """The run ``start_run`` returned; a context manager that ends it with MLflow's status."""

    def __init__(
        self, run: Run, *, owns: bool, client: Client, read_data: Callable[[], RunData] | None = None
    ) -> None:
        self._run = run
        # A resumed run's data is read from the store when first looked at: its metric files
        # may hold millions of points (2.7 s for 390,000), and a requeued job resuming at every
        # rank should be logging again at once.
        self._read_data = read_data
        # A plain attribute, not a property: every fluent log call reads it.
        self.run_id = run.info.run_id
        # Whether end_run() without a status terminates the run: the creator does, an attached
        # process (another rank, a resumed job) does not.
        self.owns = owns
        # Whether this process got the run by forking from the process that started it: the
        # child logs to it but, as in MLflow (whose forked child has no active run), it does not
        # keep the child's own start_run() from starting a run.
        self.forked = False
        # The client of the store the run lives in: end_run() ends it there, even after
        # set_tracking_uri() pointed the fluent API at another store.
        self.client = client

    @property
    def info(self) -> RunInfo:
        return self._run.info

    @property
    def data(self) -> RunData:
        read, self._read_data = self._read_data, None
        if read is not None:
            from ..store import Run  # loaded with the client

            self._run = Run(info=self._run.info, data=read())
        return self._run.data

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_id} owns={self.owns}>"

    def open_client(self) -> Client:
        """The run's client; a new one of the same store if it was closed by hand meanwhile."""
        if self.client.state is not _OPEN:
            from ._client import Client

            self.move_to(Client(self.client.tracking_uri, config=self.client.config))
        return self.client

    def move_to(self, client: Client) -> None:
        """Log to and end the run through ``client``, its closed client's successor."""
        self.client = client
        client._known_runs.add(self.run_id)  # its creation may still be on its way (spooled): not looked for
        if self.owns:  # the closed client's connection no longer fails it if the process dies (Will.clear)
            client._sender.will.add(self.run_id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            self._end(exc_type)
        except BaseException as interrupt:
            # A handler's exception (Ctrl-C, a timeout's SIGALRM) before end_run held the signals left the
            # run active after the block: it ends as that exception ends a block (no-op once off the stack).
            self._end(type(interrupt))
            raise

    def _end(self, exc_type: type[BaseException] | None) -> None:
        """End the run, and the runs nested in it, as a block left by ``exc_type`` (None: none) ends it."""
        if exc_type is None:
            status = None  # end_run's default: FINISHED by the owner, unless another process failed it
        elif issubclass(exc_type, KeyboardInterrupt):
            status = KILLED
        else:
            status = FAILED
        with _lock:
            runs = _thread_runs()
            if self in runs:
                # The runs nested in it end as it does: a trial started without a `with` that raised
                # inside the block was shown FINISHED beside its parent's FAILED (MLflow fails the
                # innermost run there, and leaves the block's own run to end FINISHED at exit).
                while runs and runs[-1] is not self:
                    end_run(None if runs[-1].forked else status)  # a run inherited by fork is the parent's to end
                # A forked child leaving its parent's block (sys.exit(0) in the child, an exception
                # there) ends nothing: the parent does, as the block's other exits leave it. It ended
                # the run FAILED, which the parent's FINISHED then could not undo (MLflow's last
                # writer, the parent, made it FINISHED).
                _end_run(None if self.forked else status, keep_failure=True)


# -- tracking URI and experiments -------------------------------------------------------------------


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Log to this ./mlruns path (or ``file:`` URI) from now on, here and, through
    TRACKD_TRACKING_URI and MLFLOW_TRACKING_URI, in the processes this one starts."""
    global _tracking_uri, _client, _last_main_run
    from ._config import resolve_store_uri

    retired = None
    with _lock:
        # Absolute, in the form given: a plain path, or a file: URI (see resolve_store_uri).
        _tracking_uri = resolve_store_uri(uri)
        _last_main_run = None  # a run of the old store: another thread logs to a new one meanwhile
        # As MLflow's set_tracking_uri: processes this one starts (spawn children, subprocesses,
        # MLflow itself) use the same store. Absolute, so a child in another folder does too.
        os.environ["TRACKD_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"] = _tracking_uri
        if _client is not None and _client.artifact_root != _tracking_uri:
            # The old client's active runs end through it (end_run closes it after the last).
            # One with none is closed now: a test suite pointing each test at its own store kept
            # a sender thread and a daemon connection per store until exit, and past the daemon's
            # connection limit every end_run waited TRACKD_EXIT_TIMEOUT and spooled.
            if all(run.client is not _client for stack in _stacks.values() for run in stack):
                retired = _client
            _client = None
    if retired is not None:
        retired.close()  # delivers what it accepted first, as end_run would


def get_tracking_uri() -> str:
    """The store this process logs to, as MLflow's: the URI set (or in the environment) in its
    form, a plain path or a ``file:`` URI, else ``file:///<cwd>/mlruns``. Absolute: the fluent
    API's store once it is in use (fixed at its first use, even if the working folder changed
    since), else the one it would use."""
    from ._config import resolve_store_uri

    client = _client
    if client is not None and client.state is ClientState.OPEN:
        return client.artifact_root
    return resolve_store_uri(_tracking_uri)


def get_client() -> Client:
    """The Client the fluent functions use (created on first use, one per tracking URI).

    The URI is resolved when the client is made (and again after set_tracking_uri), not on every
    call: resolving reads the environment and the file system, which log calls must not pay for.

    The first call imports the Client and what delivers its events (the sender, the protocol,
    msgpack, the store reader): ``import trackd`` alone does not, so a process that imports
    trackd without logging does not pay for them.
    """
    global _client
    client = _client
    if client is not None and client.state is ClientState.OPEN:
        return client
    with _lock:
        if _client is not None and _client.state is not ClientState.OPEN and _lifecycle.closed_at_exit:
            # A thread logging after exit closed the clients: the closed client counts its calls
            # (Client._check_run). A new one started a sender thread that nothing closed, and
            # lost its points without a word.
            return _client
        if _client is None or _client.state is not ClientState.OPEN:
            from ._client import Client

            closed, _client = _client, Client(_tracking_uri)  # its runs (run.client.close()) go on through it:
            for run in [run for stack in list(_stacks.values()) for run in stack if run.client is closed]:
                if run.client.tracking_uri == _client.tracking_uri:
                    run.move_to(_client)
        return _client


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make an experiment active (creating it by name if needed) and return it."""
    global _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        # An InvalidArgument (a ValueError too): `except MlflowException` of ported code missed a ValueError.
        raise InvalidArgument("set_experiment() takes exactly one of experiment_name and experiment_id.")
    client = get_client()
    from ..store._entities import LIFECYCLE_ACTIVE  # loaded with the client

    if experiment_name is not None:
        try:
            experiment_id = client.get_or_create_experiment(experiment_name)
        except DeliveryError:
            # The daemon refused to create it: a deleted experiment holds the name (said below in
            # MLflow's words), or the refusal stands as it is.
            deleted = client.get_experiment_by_name(experiment_name)
            if deleted is None or deleted.lifecycle_stage == LIFECYCLE_ACTIVE:
                raise
            experiment_id = deleted.experiment_id
    assert experiment_id is not None
    experiment = client.get_experiment(experiment_id)
    if experiment.lifecycle_stage != LIFECYCLE_ACTIVE:
        # MLflow's check and words: runs started in it would be refused only at flush().
        raise InvalidArgument(
            f"Cannot set a deleted experiment {experiment.name!r} as the active experiment. You can restore the "
            "experiment, or permanently delete the experiment to create a new one."
        )
    with _lock:
        _experiment_id = experiment.experiment_id
        # As MLflow's set_experiment ("so that subprocess can inherit it"): the ranks a launcher
        # starts, spawn children and subprocesses create their runs in this experiment too.
        os.environ["MLFLOW_EXPERIMENT_ID"] = _experiment_id
    return experiment


def _current_experiment_id(client: Client) -> str:
    if _experiment_id is not None:
        return _experiment_id
    name, wanted = os.environ.get("MLFLOW_EXPERIMENT_NAME"), os.environ.get("MLFLOW_EXPERIMENT_ID")
    if name:
        # As MLflow's: an existing experiment of that name whose id is not MLFLOW_EXPERIMENT_ID is
        # refused, not quietly preferred (the runs went to the name's, the user meant either).
        existing = client.get_experiment_by_name(name) if wanted else None
        if existing is not None and wanted != existing.experiment_id:
            raise InvalidArgument(
                f"The provided MLFLOW_EXPERIMENT_ID environment variable value `{wanted}` does not match the "
                f"experiment id `{existing.experiment_id}` for experiment name `{name}`"
            )
        return existing.experiment_id if existing is not None else client.get_or_create_experiment(name)
    return wanted or "0"


# -- runs (start_run, and what it decides for a run: _run_start) --------------------------------


def end_run(status: str | None = None) -> None:
    """End the active run and wait until what was logged to it is in the store (while the daemon
    keeps acknowledging, until TRACKD_EXIT_TIMEOUT without a reply; at exit, that long in all).

    Without ``status`` the run is ended FINISHED by the process that owns it, unless another
    process (a rank, a worker) failed or killed it meanwhile; an attached process only detaches.
    """
    _end_run(status, keep_failure=status is None)


def _end_run(
    status: str | None, *, keep_failure: bool, exiting: bool = False, runs: list[ActiveRun] | None = None,
) -> None:
    """end_run; ``keep_failure``: a run another process already failed or killed stays so (every
    end trackd makes by itself: a block's exit, interpreter exit, SIGTERM); ``exiting``: the
    clients close next, and their close says what could not be delivered; ``runs``: another
    thread's stack (at exit), instead of this thread's."""
    global _last_main_run
    with _lock, _lifecycle.signals_held():  # the run is off the stack and its end not queued: no SIGTERM or Ctrl-C there
        if runs is None:
            runs = _thread_runs()
        if not runs:
            return
        active = runs[-1]
        client = active.open_client()
        if status is not None:
            from ..store import validate_run_status

            validate_run_status(status)  # a bad status leaves the run active, to be ended again
        runs.pop()
        if not runs and runs is _stacks.get(threading.main_thread()):
            _last_main_run = active
        if status is not None or active.owns:
            client._terminate(active.run_id, status or FINISHED, None, keep_failure=keep_failure, shared=keep_failure and (status is None or exiting))
            if active.owns:
                client._sender.will.discard(active.run_id)  # after its end is queued (see _will.py)
                _lineage.withdraw(active.run_id)
        # A client the fluent API no longer uses (set_tracking_uri moved on) has nothing left to do.
        retired = client is not _client and all(run.client is not client for stack in _stacks.values() for run in stack)
    if retired:
        client.close()
        return
    client._sender.flush_or_warn(client.config.exit_timeout, exiting=exiting, patient=True)  # mid-job: bounds silence
    # Delivered (or spooled): a forked child no longer needs to re-send this run's creation.
    client._sender.creations.pop(active.run_id, None)


def active_run() -> ActiveRun | None:
    """This thread's innermost active run; in a thread that never started one, the main thread's
    (where its log calls go); else None."""
    runs = _thread_runs()
    return runs[-1] if runs else _main_thread_run() if _here.last is None else None


def _main_thread_run() -> ActiveRun | None:
    """The main thread's innermost active run: a thread that never started a run of its own (a data
    or monitoring thread) logs there, as the whole process did before MLflow 3 made runs per
    thread (where such a call would start a stray run of its own)."""
    with _lock:
        runs = _stacks.get(threading.main_thread())
        return runs[-1] if runs else None


def _active_run_id() -> str:
    return _logging_run().run_id


def _logging_run() -> ActiveRun:
    """The run a log call without a run id goes to: the active run, else one started for it, as MLflow's."""
    active = active_run()
    if active is not None:
        return active
    # Exit (or SIGTERM) is ending the runs: a thread logging on (a monitor) logs to the run it was logging
    # to. A run started now would never end: every preempted job left one RUNNING with its last points.
    late = _run_ended_at_exit
    if threading.current_thread() is not threading.main_thread():
        if _here.last is not None:
            # A thread that started a run of its own (a sweep's trial) is MLflow 3's: with none
            # active it starts one (it logged to the main thread's run, the sweep's parent, every
            # trial's later points mixed in one key there). At exit: to the last run it started.
            late = _here.last if late is not None else None
        elif late is None:
            late = _last_main_run  # between the main thread's runs (a sweep): the one it last ended
    if late is not None:
        return late
    from ._run_start import start_run  # loaded by trackd.client already; it imports this module

    return start_run()


# -- logging metrics: the hot path (params, tags and artifacts: _fluent_passthrough) -------------


def log_metric(
    key: str, value: float, step: int | None = None, synchronous: bool | None = None,
    timestamp: int | None = None, run_id: str | None = None,
) -> RunOperations | None:
    """Log a metric value to the active run (about a microsecond; ``synchronous=True`` also flushes,
    ``synchronous=False`` returns a ``RunOperations`` whose ``wait()`` flushes)."""
    client = _client
    if client is None or client.state is not _OPEN:
        client = get_client()
    try:
        runs = _here.runs
    except AttributeError:  # this thread's first fluent call
        runs = _thread_runs()
    # `timestamp or None`: MLflow's fluent call takes 0 as "now" (timestamp or get_current_time_millis()).
    client.log_metric(run_id or (runs[-1].run_id if runs else _active_run_id()), key, value, timestamp or None, step)
    if synchronous is not None:
        return settle(client, synchronous)
    return None


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, synchronous: bool | None = None,
    run_id: str | None = None, timestamp: int | None = None,
) -> RunOperations | None:
    """Log several metric values with one step and timestamp."""
    client = _client
    if client is None or client.state is not _OPEN:
        client = get_client()
    try:
        runs = _here.runs
    except AttributeError:
        runs = _thread_runs()
    client.log_metrics(run_id or (runs[-1].run_id if runs else _active_run_id()), metrics, step, timestamp or None)
    if synchronous is not None:
        return settle(client, synchronous)
    return None


def _end_runs_at_exit(status: str | None = None) -> None:
    """End the runs this process owns: FAILED after an uncaught exception, KILLED after Ctrl-C or SIGTERM.

    Runs it only attached to (another rank's, a forked parent's) are left to their owner. A run
    another process already failed or killed keeps that status: when one rank fails, torchrun
    SIGTERMs the others, whose KILLED must not hide the FAILED that caused it.
    """
    if status is None:
        # In an interactive session (a notebook's kernel, IPython, the REPL) sys.last_value is the
        # last exception a cell raised and the shell showed, not what the process dies of: a typo
        # or a Ctrl-C hours earlier ended the notebook's run FAILED or KILLED at shutdown. IPython
        # sets sys.ps1 "so that scripts can decide if they are running interactively"
        # (InteractiveShell.init_prompts), as the REPL does; MLflow's exit hook always finishes.
        interactive = hasattr(sys, "ps1") or sys.flags.interactive
        last = None if interactive else getattr(sys, "last_value", None)
        if last is None:
            status = _lifecycle.child_failure or FINISHED
        elif isinstance(last, KeyboardInterrupt):
            status = KILLED
        else:
            status = FAILED
    global _run_ended_at_exit
    # Other threads' runs first: a run a thread nested under the main thread's ends before its parent.
    main = threading.main_thread()
    with _lock:
        if _run_ended_at_exit is None:
            _run_ended_at_exit = _main_thread_run()
        stacks = sorted(_stacks.items(), key=lambda item: item[0] is main)
    for _, runs in stacks:
        while runs:
            _end_run(status if runs[-1].owns else None, keep_failure=True, exiting=True, runs=runs)


def _after_fork_in_child() -> None:
    # A forked child logs to its parent's runs but never ends them: the parent does.
    global _lock, _run_ended_at_exit, _last_main_run
    _lock = threading.RLock()
    _run_ended_at_exit = None
    _last_main_run = None
    here = threading.current_thread()  # the only thread a forked child has
    for thread in [t for t in _stacks if t is not here]:
        del _stacks[thread]
    for active in _stacks.get(here, ()):
        active.owns, active.forked = False, True
    _lineage.forget_after_fork()  # the runs TRACKD_OWNED_RUNS lists are the parent's: attached here too


os.register_at_fork(after_in_child=_after_fork_in_child)
# Registered after _lifecycle's hook, so it runs first (atexit is last-in, first-out): runs are
# ended before the clients deliver and close. SIGTERM runs the same hook with KILLED.
atexit.register(_end_runs_at_exit)
EXIT_HOOKS.append(_end_runs_at_exit)
