"""What the store writes: the items of one batch, as the daemon hands them to StoreWriter.write.

The store never interprets ``origin``: it is an opaque hashable that the daemon attaches to an item so
that a failure can be routed back to the client that sent it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._artifact_copies import ArtifactCopy


@dataclass(frozen=True, slots=True)
class NewRun:
    """Create a run unless it already exists in that experiment ("ensure": every rank sends one)."""

    origin: Hashable
    run_id: str
    experiment_id: str
    user_id: str
    run_name: str
    start_time_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    # From the run's owner (rank 0, the process that started it): a run that exists already, made
    # by another process's create that came first, takes this one's name, user, start time and
    # tags. Otherwise (another rank, an attached process, a forked child's copy of its parent's
    # create) a run that exists is left as it is.
    owner: bool = False


@dataclass(frozen=True, slots=True)
class ParamWrite:
    """Log a param; params are immutable once logged."""

    origin: Hashable
    run_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class TagWrite:
    """Set a run tag, or delete it when value is None."""

    origin: Hashable
    run_id: str
    key: str
    value: str | None


@dataclass(slots=True)
class MetricAppend:
    """Every point of one metric of one run in a batch, appended in one write()."""

    run_id: str
    key: str
    points: list[tuple[int, float, int]] = field(default_factory=list)  # (timestamp_ms, value, step)
    origins: list[Hashable] = field(default_factory=list)
    # Where each origin's points begin in ``points`` (origins send theirs in one stretch each):
    # a file that cannot be written is reported to each client with its own count of points.
    starts: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True, slots=True)
class ArtifactWrite:
    """Store a file under the run's artifacts (exactly one of content and source_path is set), or
    make an empty folder there (``mode`` a folder's, neither set)."""

    origin: Hashable
    run_id: str
    path: str
    content: bytes | None = None
    source_path: str | None = None
    # source_path copied into the store ahead of the write (the daemon's way): the write renames it.
    # Without one the write copies the file itself.
    copy: ArtifactCopy | None = None
    # st_mode's type and permission bits, as the client found them: S_IFREG | 0o755 makes a file
    # of that mode (MLflow's shutil.copy2 keeps it), S_IFDIR an empty folder. None: a file of the
    # store's default mode (an older client's record, log_text's content).
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class Termination:
    """Set a run's final status and end time."""

    origin: Hashable
    run_id: str
    status: int
    end_time_ms: int
    # Leave a run that is FAILED or KILLED as it is (every end the fluent API makes by itself: a
    # block's exit, end_run() without a status, interpreter exit, SIGTERM).
    keep_failure: bool = False


@dataclass(slots=True)
class WriteBatch:
    """What StoreWriter.write applies, in this field order."""

    new_runs: list[NewRun] = field(default_factory=list)
    params: list[ParamWrite] = field(default_factory=list)
    tags: list[TagWrite] = field(default_factory=list)
    metrics: dict[tuple[str, str], MetricAppend] = field(default_factory=dict)
    artifacts: list[ArtifactWrite] = field(default_factory=list)
    terminations: list[Termination] = field(default_factory=list)


@dataclass(slots=True)
class RunCounts:
    """The runs writers made, ended and made RUNNING again, for ``trackd daemon status``.

    Counted as the store changes, never from what a client asked: a create of a run that exists
    (another rank's, a process attaching to it, a write done again after a restart) made nothing,
    and an end that leaves the run as it was (kept out, or the same status written again) ended
    nothing. The daemon's writers of every store share one.
    """

    # Runs whose meta.yaml a writer made.
    created: int = 0
    # Ended runs set RUNNING again (start_run(run_id=) of a FINISHED run): ended once more later,
    # they are counted in ``ended`` once more.
    resumed: int = 0
    # RUNNING runs ended, by the status they ended with: by their client, or FAILED by the daemon
    # for a process that exited without ending them. A run's later end that changes its status
    # (FINISHED, then FAILED) is not counted again.
    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("FINISHED", "FAILED", "KILLED"), 0))


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """One item the store could not write: ``item`` names it, ``message`` is a sentence saying why."""

    origin: Hashable
    item: str
    message: str
    # Events the item held for this origin: the points of a metric file that was not written.
    events: int = 1
