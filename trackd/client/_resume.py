"""Resuming a run: ``start_run`` with the id of a run that is in the store already.

A requeued job starts its run again by id (``run_id=``, or MLFLOW_RUN_ID), and a launcher hands
every rank one id. As MLflow's start_run, the run takes the name, tags and description given, and
one that has ended is RUNNING again and ended by this process; the run's data is read from the
store only when first looked at. What is checked first is in ``_run_checks.py``. Loaded with the
client, by ``start_run``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from .._peer import process_started_ms
from ..store import Run, RunData
from ..store._entities import FAILURE_REASON_TAG, RUN_NAME_TAG
from ..store._validation import MAX_INT64
from . import _lifecycle
from ._fluent import ActiveRun
from ._run_checks import check_resumable
from ._run_start import NOTE_TAG

if TYPE_CHECKING:
    from ..store import RunInfo
    from ._client import Client


def resume_run(
    client: Client, existing: RunInfo, experiment_id: str | None, *, run_name: str | None, tags: Mapping[str, Any] | None,
    description: str | None, rank: str | None, attached: bool, held: ExitStack,
) -> ActiveRun:
    """The active run of ``existing``, resumed through ``client`` (``experiment_id``: the one asked
    for or made active, if any; ``rank``: RANK; ``attached``: this process or one that started it
    owns the run (``_lineage.py``); ``held``: where the signals are held until the run is on its
    thread's stack)."""
    check_resumable(existing, experiment_id)
    # A run this process created or found before is its own to reopen (see _ended_by_a_sibling).
    known = existing.run_id in client._known_runs
    client._known_runs.add(existing.run_id)
    # As MLflow's: a resumed run takes the name, tags and description given.
    changes = {str(k): str(v) for k, v in (tags or {}).items()}
    if description is not None:
        changes[NOTE_TAG] = description
    if run_name is not None:
        changes[RUN_NAME_TAG] = run_name
    for key, value in changes.items():
        client.set_tag(existing.run_id, key, value)
    reader, resumed_id = client._reader, existing.run_id
    removed: set[str] = set()

    def read_data() -> RunData:
        stored = reader.get_run(resumed_id).data
        tags = {key: value for key, value in stored.tags.items() if key not in removed}
        return RunData(metrics=stored.metrics, params=stored.params, tags={**tags, **changes})

    info = existing if run_name is None else existing.replace(run_name=run_name)
    # A run that has ended (FINISHED, FAILED, KILLED) started again is a resumed job: as
    # MLflow's start_run does, it is RUNNING again (its old end time kept until it ends)
    # and this process ends it. Not by another rank than 0: a late rank must not reopen
    # the run rank 0 has just finished. Nor by a process whose parent owns the run: a spawn
    # worker of a run another worker failed must not reopen it under its parent.
    # Nor, by rank 0 (RANK set), a run another rank of this launch failed or killed before this
    # process got to it: it was created after this process started, by another (a restarted job's
    # run is older than its processes). Rank 0 slower to start than a rank that died at its first
    # step (loading its data while the other ran out of memory) reopened the run and ended it
    # FINISHED, the failure erased. It is this process's to end all the same, and its ends keep
    # the failure (keep_failure). Without RANK nothing tells a sibling from an earlier script, and
    # a run this process failed itself is reopened, as MLflow's resume does.
    resumed = (
        not attached and existing.status not in ("RUNNING", "SCHEDULED") and rank in (None, "", "0")
        and not (rank == "0" and not known and _ended_by_a_sibling(existing))
    )
    if resumed:
        held.enter_context(_lifecycle.signals_held())  # until the run is on the stack, ended by SIGTERM or Ctrl-C
        # Owned before RUNNING is queued: the daemon is told of it first (see _will.py).
        client._sender.will.add(resumed_id)
        try:
            # The reason the daemon gave for failing the run (its process was killed) is about an
            # end the run no longer has: left, a run this process ends FINISHED would say it failed.
            # MLflow's resume only sets RUNNING and keeps no history of past ends; the daemon's log
            # keeps the line. Read before RUNNING is sent: the daemon writes the tag before FAILED.
            if FAILURE_REASON_TAG not in changes and FAILURE_REASON_TAG in reader.get_run_tags(resumed_id):
                client.delete_tag(resumed_id, FAILURE_REASON_TAG)
                removed.add(FAILURE_REASON_TAG)
            client.set_terminated(existing.run_id, "RUNNING", _kept_end_time(existing.end_time))
        except BaseException:
            client._sender.will.discard(resumed_id)  # not resumed: not this process's to end
            raise
        info = info.replace(status="RUNNING")
        client._learn_stored_params(resumed_id)  # reopened: a param logged again with another value raises, as in MLflow
    # Under a launcher (RANK set) rank 0 owns the shared run whichever rank created it first,
    # unless the launcher started it with trackd (it owns it then). Without RANK, a process that
    # finds the run RUNNING co-owns it: it is in this process's will, and its ends are shared
    # ones (Client._terminate), which the daemon writes only if no other live process owns the
    # run then. Only detaching, a requeued job resuming a run whose last attempt died unseen by
    # this daemon (another node, an MLflow process) left it RUNNING for ever; and one restarted
    # within a second of its SIGKILL was failed by the dead attempt's will after it completed.
    return ActiveRun(
        Run(info=info, data=RunData(metrics={}, params={}, tags={})),
        owns=resumed or (rank in (None, "", "0") and not attached), client=client, read_data=read_data,
    )


def _ended_by_a_sibling(existing: RunInfo) -> bool:
    """Whether ``existing`` failed or was killed after this process started: by another process of
    the same launch, as its creation then was (a run is created by the process that starts it)."""
    if existing.status not in ("FAILED", "KILLED") or not isinstance(existing.start_time, int):
        return False
    started = process_started_ms(os.getpid())
    return started is not None and existing.start_time >= started


def _kept_end_time(end_time: int | float | None) -> int | None:
    """The end time a resumed run keeps until it ends, in the int milliseconds a run's end carries.

    MLflow's reader takes a float end_time in meta.yaml as it is (hand-edited, or written by a
    tool), and so does trackd's: setting the run RUNNING again with it raised InvalidArgument
    ("expected an int"), and the run could not be resumed. (MLflow's own resume raises TypeError
    there.) Its whole milliseconds are kept; a value no end can hold (inf, nan, negative) is now.
    """
    if isinstance(end_time, float):
        return int(end_time) if math.isfinite(end_time) and 0 <= end_time <= MAX_INT64 else None
    return end_time
