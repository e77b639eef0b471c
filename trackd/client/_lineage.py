"""The runs this process, and the processes that started it, own: the ones it only attaches to.

A ``spawn`` worker that attached by id (``start_run(run_id=...)``, as the README tells it to) before
its parent's creation of the run had reached the store took itself for the run's creator: it ended
the run FINISHED when its block ended, while the parent still trained, and a SIGKILL of the parent
left the run FINISHED, never FAILED. In that window the store cannot tell who owns the run, so an
owner tells the processes it starts: the ids of the fluent runs this process owns and has not
ended are in ``TRACKD_OWNED_RUNS`` (comma-separated, after the ones its own ancestors put there),
which every process started meanwhile inherits (spawn children, subprocesses, a launcher's ranks).
``start_run(run_id=...)`` of an id listed there attaches, whether or not the run is in the store.

multiprocessing also hands it over in the ``Process`` object it sends to a ``spawn`` or
``forkserver`` child (its ``_config``, which ``BaseProcess.__init__`` copies from the current
process's): a forkserver child's environment is the server's, as it was when the server started
(before this run, in a sweep's second trial), not its parent's now. Standard library only, read
and written by ``start_run`` and ``end_run`` under the fluent API's lock.
"""

from __future__ import annotations

import os
import sys

OWNED_RUNS_ENV = "TRACKD_OWNED_RUNS"
# The key in multiprocessing's per-process config dict; "" there means "none", not "not told".
_CONFIG_KEY = "trackd_owned_runs"

# The ids this process put in the list itself (the runs it owns): only these are removed when it
# ends a run; the rest are its ancestors'. A forked child starts with none (forget_after_fork).
_advertised: list[str] = []


def _process_config() -> dict[str, object] | None:
    """multiprocessing's config of this process (inherited from the parent in a spawn or forkserver
    child), or None where multiprocessing is not imported (nothing could have handed it over)."""
    module = sys.modules.get("multiprocessing.process")
    if module is None:
        return None
    config = getattr(module.current_process(), "_config", None)
    return config if isinstance(config, dict) else None


def listed() -> list[str]:
    """The runs this process and the processes that started it own, oldest first."""
    config = _process_config()
    value = config.get(_CONFIG_KEY) if config is not None else None
    if not isinstance(value, str):
        value = os.environ.get(OWNED_RUNS_ENV, "")
    return [run_id for run_id in value.split(",") if run_id]


def _write(run_ids: list[str]) -> None:
    value = ",".join(run_ids)
    if value:
        os.environ[OWNED_RUNS_ENV] = value
    else:
        os.environ.pop(OWNED_RUNS_ENV, None)
    config = _process_config()
    if config is not None:
        config[_CONFIG_KEY] = value


def owned_in_lineage(run_id: str) -> bool:
    """Whether this process (another of its threads) or one that started it owns ``run_id``."""
    return run_id in listed()


def advertise(run_id: str) -> None:
    """This process owns ``run_id`` now: the processes it starts attach to it."""
    run_ids = listed()
    if run_id not in run_ids:
        run_ids.append(run_id)
    _advertised.append(run_id)
    _write(run_ids)


def withdraw(run_id: str) -> None:
    """This process ended ``run_id``, which it owned: a process started later may own it (resume it)."""
    if run_id not in _advertised:
        return
    _advertised.remove(run_id)
    _write([listed for listed in listed() if listed != run_id])


def forget_after_fork() -> None:
    """In a forked child: the runs listed are its parent's, never this process's to remove."""
    _advertised.clear()
