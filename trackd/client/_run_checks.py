"""What ``start_run`` checks in the store before it resumes a run or nests one under a parent.

MLflow's ``start_run`` reads both from its store (``client.get_run``) and refuses, in the words
quoted below, a run or parent that is deleted, missing or of another experiment. trackd reads
./mlruns directly, as ``Client`` reads do, and never waits on the daemon for it: a run this
process created may not be written yet (still buffered, or spooled for a stalled daemon).
Loaded with the client, by ``start_run``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from ..errors import InvalidArgument, RunNotFound
from ..store import validate_run_id
from ..store._entities import LIFECYCLE_ACTIVE

if TYPE_CHECKING:
    from ..store import RunInfo
    from ._client import Client


def check_resumable(existing: RunInfo, experiment_id: str | None) -> None:
    """Refuse, in MLflow's words, to resume a deleted run or one of another experiment than the
    one asked for (or made active by set_experiment)."""
    if existing.lifecycle_stage != LIFECYCLE_ACTIVE:
        raise InvalidArgument(f"Cannot start run with ID {existing.run_id} because it is in the deleted state.")
    if experiment_id is not None and str(experiment_id) != existing.experiment_id:
        raise InvalidArgument(
            f"Cannot start run with ID {existing.run_id} because active experiment ID {experiment_id} does not "
            f"match the run's experiment ID {existing.experiment_id}."
        )


def check_parent(client: Client, parent_run_id: object, started_here: Collection[str]) -> str:
    """``parent_run_id`` if a new run may be nested under it: a run of this store, not deleted.

    As MLflow's start_run (``client.get_run(parent_run_id)``, then "Cannot start run under parent
    run with ID ... because it is in the deleted state."). A parent in another experiment is
    accepted, as MLflow accepts it. A run missing from the store is accepted if this process
    created it or runs it (``started_here``, the client's and its sender's runs): its creation
    may still be on its way. trackd took any id here, and the run's mlflow.parentRunId tag named
    a run that did not exist.
    """
    run_id = validate_run_id(parent_run_id)
    found = client._reader.find_run(run_id)
    if found is not None:
        if found.lifecycle_stage != LIFECYCLE_ACTIVE:
            raise InvalidArgument(f"Cannot start run under parent run with ID {run_id} because it is in the deleted state.")
        return run_id
    sender = client._sender
    known = (started_here, client._known_runs, sender.creations, sender.inherited_creations)
    if any(run_id in runs for runs in known):
        return run_id
    raise RunNotFound(
        f"Cannot start a run under parent run {run_id!r}: no run has that id in the store at {client.tracking_uri}. "
        "Expected the id of a run of this store: one this process started, or one another process created and "
        "flushed."
    )


def warn_no_system_metrics(call: str = "start_run(log_system_metrics=True)", outcome: str = "the run starts without them") -> None:
    """start_run(log_system_metrics=True), or one of mlflow.config's system-metrics switches
    (``call``): say, in one line, that trackd collects none.

    MLflow starts a monitor thread that logs CPU, memory and GPU use as ``system/*`` metrics; code
    ported with ``import trackd as mlflow`` that passed it raised TypeError at start_run.
    """
    from ._outbox import warn

    warn(f"{call}: trackd collects no system metrics; {outcome} (log them with trackd.log_metrics() from a thread of your own).")


def warn_created_missing(run_id: str, store: str) -> None:
    """One line: ``start_run`` created the run MLFLOW_RUN_ID names, which is not in ``store``.

    Said only where no rank of a shared run (RANK unset) and no process that started this one
    (``_lineage.py``) explains it. MLflow's start_run raises "Run '...' not found" there: the
    variable is how a job resumes its run, and one left set in the shell (or naming a run of
    another store) made a new, empty run without a word where the user meant to resume one.
    """
    from ._outbox import warn

    warn(
        f"MLFLOW_RUN_ID={run_id}: no run has that id in the store at {store}, so a new run was started with it, which "
        f"this process ends (MLflow raises \"Run '{run_id}' not found\"). To resume a run, check the variable (left set "
        "in the shell?) and the store. To share a run, start it in the process that starts the others (they attach "
        "to it), or set RANK in each (0 for the one that ends it)."
    )
