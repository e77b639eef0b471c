"""Starting a run: ``start_run``, and what it decides for the run it makes active.

Whether the run is new or one resumed by id (``run_id=``, ``MLFLOW_RUN_ID``), the parent it is
nested under, and which process ends it: this one, another rank (``RANK``), or a process that
started this one (``_lineage.py``). The run goes on this thread's stack of active runs, kept by
``_fluent.py`` with the client the fluent API uses. Resuming a run is in ``_resume.py``, what is
checked in the store first in ``_run_checks.py``, and a new run's system tags in ``_system_tags.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from ..errors import InvalidArgument
from . import _fluent, _lifecycle, _lineage
from ._fluent import ActiveRun, _current_experiment_id, _here, _main_thread_run, _stacks, _thread_runs, get_client

PARENT_RUN_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run, or attach to one by id, and make it active. Use it as a context manager.

    ``run_id`` (or ``MLFLOW_RUN_ID``) naming a run that does not exist yet creates it with that id,
    so a launcher can hand one id to every rank (one line says so for ``MLFLOW_RUN_ID`` without
    ``RANK``, unless a process that started this one owns the run: MLflow raises there, and a
    variable left set in the shell made a new run silently). A run this process or one that
    started it owns (``TRACKD_OWNED_RUNS``: a spawn worker's parent, a launcher that
    started the run) is attached, never ended, whatever ``RANK`` and whether or not it is in the
    store yet. Otherwise, under a launcher (``RANK`` set) rank 0 ends the shared run, whichever
    rank created it; without ``RANK`` the process that created it does. A process that attached
    to another process's running run leaves it running unless it passes a status to end_run(). A
    run that has ended, started again (a resumed job), is RUNNING again and ended by this
    process, as in MLflow (not by a rank other than 0, nor by an attached process).

    ``log_system_metrics=True`` is accepted and said, in one warning line, to collect nothing.
    """
    if log_system_metrics:
        from ._run_checks import warn_no_system_metrics

        warn_no_system_metrics()
    runs = _thread_runs()
    below = runs[-1] if runs else None
    try:
        return _start_run(run_id, experiment_id, run_name, nested, parent_run_id, tags, description)
    except BaseException as interrupt:
        # A Ctrl-C held while the run started is raised once it is on the stack (signals_held), as
        # may another handler's exception (a timeout's SIGALRM): the run stayed active (a notebook's
        # next cell raised "already active", RUNNING while the kernel lived). It ends as the block
        # never entered would end it (KILLED for Ctrl-C), off the stack, as MLflow leaves none active.
        if runs and runs[-1] is not below:
            runs[-1].__exit__(type(interrupt), interrupt, interrupt.__traceback__)
        raise


def _start_run(
    run_id: str | None, experiment_id: str | None, run_name: str | None, nested: bool, parent_run_id: str | None,
    tags: Mapping[str, Any] | None, description: str | None,
) -> ActiveRun:
    # _fluent's lock and active experiment read there at each call: a forked child's lock is a new
    # one (_fluent._after_fork_in_child), and set_experiment() sets the experiment anew.
    with _fluent._lock, ExitStack() as held:
        runs = _thread_runs()
        # A forked parent's runs (a fork Pool worker's) are where the child logs, not runs it
        # started: a trial's start_run() there starts its run, as MLflow's does in such a child.
        started = runs if not runs or not runs[-1].forked else []
        if started and not nested:
            # MLflow's words, its advice to end the run first included: re-running a notebook cell
            # that starts a run is the usual way here, and nesting is rarely what was meant.
            raise RuntimeError(
                f"Run with UUID {started[-1].run_id} is already active. To start a new run, first end the current "
                "run with trackd.end_run(). To start a nested run, call start_run with nested=True."
            )
        client = get_client()
        from_variable = run_id is None and not runs
        if from_variable:
            # Taken once, as MLflow takes it: the next start_run() of this process makes a new run.
            run_id = os.environ.pop("MLFLOW_RUN_ID", None) or None
        existing = client._reader.find_run(run_id) if run_id is not None else None
        rank = os.environ.get("RANK")
        # A run this process (another thread) or one that started it owns is only attached to, in
        # the store or not yet: a spawn worker's creation of its parent's run could reach the
        # store first, and the worker ended the run FINISHED while the parent still trained. It
        # goes before RANK: a launcher that started the run with trackd ends it, not its rank 0.
        attached = run_id is not None and _lineage.owned_in_lineage(run_id)
        if existing is not None:
            from ._resume import resume_run  # loaded with the client above

            experiment = experiment_id if experiment_id is not None else _fluent._experiment_id
            active = resume_run(
                client, existing, experiment, run_name=run_name, tags=tags, description=description, rank=rank,
                attached=attached, held=held,
            )
        else:
            from ._system_tags import system_tags

            run_tags = system_tags()
            if parent_run_id and started and parent_run_id != started[-1].run_id:
                # MLflow's check, in its words.
                raise InvalidArgument(
                    f"Current run with UUID {started[-1].run_id} does not match the specified parent_run_id "
                    f"{parent_run_id}. To start a new nested run under the parent run with UUID "
                    f"{started[-1].run_id}, first end the current run with trackd.end_run()."
                )
            if parent_run_id:  # MLflow's test: "" is no parent
                from ._run_checks import check_parent

                root = client.tracking_uri
                here = {run.run_id for stack in _stacks.values() for run in stack if run.client.tracking_uri == root}
                here.update(_lineage.listed())  # a spawn worker's parent's run, maybe not written yet
                parent_run_id = check_parent(client, parent_run_id, here)
            current = (runs[-1] if runs else _main_thread_run()) if nested else None
            parent = parent_run_id or (current.run_id if current is not None else None)
            if parent is not None:
                run_tags[PARENT_RUN_TAG] = parent
            if description is not None:
                run_tags[NOTE_TAG] = description
            run_tags.update({k: str(v) for k, v in (tags or {}).items()})
            experiment = experiment_id if experiment_id is not None else _current_experiment_id(client)
            held.enter_context(_lifecycle.signals_held())  # until the run is on the stack, ended by SIGTERM or Ctrl-C
            shared = run_id is not None
            owns = not attached and (not shared or rank in (None, "", "0"))
            # The owner's create names the run even if another rank's (or an attached worker's)
            # reaches the store first; the others only make sure it exists.
            if owns:
                # Owned before its creation is queued: the daemon is told of the run ahead of the
                # batch that creates it, so a process killed just after that batch went has its
                # run failed, not left RUNNING for ever (_will.py).
                from ..store import validate_new_run_id
                from ._names import random_id

                # Checked first: a run id the protocol refuses, owned, would be told to every daemon
                # this process meets, and refused each time.
                run_id = validate_new_run_id(run_id, client._run_in_store) if run_id is not None else random_id()
                client._sender.will.add(run_id)
            try:
                run = client.create_run(experiment, tags=run_tags, run_name=run_name, run_id=run_id, owner=owns)
            except BaseException:
                if owns and run_id is not None:
                    client._sender.will.discard(run_id)  # never created
                raise
            if from_variable and shared and not attached and rank in (None, ""):
                from ._run_checks import warn_created_missing

                warn_created_missing(run.info.run_id, client.tracking_uri)
            active = ActiveRun(run, owns=owns, client=client)
        runs.append(active)
        if active.owns:  # the daemon fails it if this process exits without ending it (_will.py)
            # Added already if this process created the run or set it RUNNING again; added again,
            # it wakes the sender thread, which sends the run at once.
            client._sender.will.add(active.run_id)
            _lineage.advertise(active.run_id)  # and the processes it starts from now on attach to it
        if len(runs) == 1 or runs[-2].forked:
            # MLflow's last_active_run is the run whose end_run emptied the stack: this one.
            _here.last = active
        return active
