"""How the store writer tells the disk's failures from an item's, and which writes it can skip."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from ._entities import RunStatus
from ._write_items import MetricAppend, TagWrite, Termination

_log = logging.getLogger("trackd.store")
# A failure set by another rank or worker, which a default end (keep_failure) leaves as it is.
_FAILURES = (int(RunStatus.FAILED), int(RunStatus.KILLED))

T = TypeVar("T")

# The disk, not the item, refused these writes; they may succeed later (space freed, remount).
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENFILE, errno.EMFILE})


def journal_call(method: Callable[..., T], *args: Any) -> T:
    """A journal write; a disk that refuses it makes the whole batch wait, like any other write."""
    try:
        return method(*args)
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise refusal("The write journal", exc, "the journal") from exc
        raise


def refusal(what: str, exc: OSError, item: str) -> StoreUnavailable:
    """The error for a write the disk refused (full, read-only): ``what`` cannot be written, why, and where.

    The reason comes before the colon: the daemon's status and log group errors by the text before
    it, and "disk full" and "read-only" must stay two kinds. An OSError from a descriptor names no
    file (its filename is None, which used to show as "None"), so ``item`` stands in for it.
    """
    return StoreUnavailable(f"{what} cannot be written ({exc.strerror}): {_where(exc, item)}.")


def os_error_message(item: str, exc: OSError) -> str:
    """A sentence for an item the disk refused for a reason of its own (a key clashing with a folder...)."""
    if isinstance(exc, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        return (
            f"Cannot write {item}: it clashes with an existing key, because MLflow stores each "
            f"key as a file and a key cannot be both a file and a folder of other keys (such "
            f"as 'a' and 'a/b'); found {exc.strerror} at {exc.filename!r}."
        )
    if exc.filename is None:
        return f"Cannot write {item}: {exc.strerror or exc}."
    return f"Cannot write {item}: {exc.strerror or exc} ({exc.filename!r})."


def _where(exc: OSError, item: str) -> str:
    return item if exc.filename is None else repr(exc.filename)


def last_write_per_tag(tags: list[TagWrite]) -> list[TagWrite]:
    """Only the last set or delete of each tag in a batch: the earlier ones would each rewrite the
    same file (a temp file and a rename) only to be overwritten, and a loop calling
    set_tag("epoch", i) would cost the daemon a file per call. A final delete keeps the set before
    it, so deleting a tag set earlier in the same batch still finds it."""
    last: dict[tuple[str, str], TagWrite] = {}
    last_set: dict[tuple[str, str], TagWrite] = {}
    for tag in tags:
        key = (tag.run_id, tag.key)
        last.pop(key, None)  # re-insert, so the order is that of the last writes
        last[key] = tag
        if tag.value is not None:
            last_set[key] = tag
    if len(last) == len(tags):
        return tags
    kept = []
    for key, tag in last.items():
        if tag.value is None and key in last_set:
            kept.append(last_set[key])
        kept.append(tag)
    return kept


def item_name(kind: str, key: str, run_id: str) -> str:
    """How a failure names the item: "metric 'loss' of run <id>"."""
    return f"{kind} {key!r} of run {run_id}"


def with_points(item: str, events: int) -> str:
    """``item`` with its count of points when a client lost more than one point of it."""
    return item if events == 1 else f"{item} ({events} points)"


def origins_of(append: MetricAppend) -> dict[Hashable, int]:
    """Each client that sent points of this file, with how many: one failure each, counting them."""
    counts: dict[Hashable, int] = {}
    ends = [*append.starts[1:], len(append.points)]
    for origin, start, end in zip(append.origins, append.starts, ends):
        counts[origin] = counts.get(origin, 0) + end - start
    return counts or {None: len(append.points)}


def end_kept_out(end: Termination, meta: Mapping[str, Any]) -> bool:
    """Whether a default end (keep_failure: one trackd makes by itself) leaves the run of ``meta`` as it is.

    A run another rank or worker failed or killed stays so. And a run that ended later than this
    end did is not ended again (said in the log): the end is stale, an attempt's spooled KILLED
    delivered (``trackd sync``) after a resumed attempt had finished the run, which it made
    KILLED with the old end time. A RUNNING run is always ended: a resumed run keeps its last end
    time until it ends, and a resuming host's clock may be behind the last one's.
    """
    if not end.keep_failure:
        return False
    status, ended_ms = meta.get("status"), meta.get("end_time")
    if status in _FAILURES:
        return True
    # A float end_time (a meta.yaml another writer made, which MLflow's reader takes) is a time too.
    if status != int(RunStatus.FINISHED) or not isinstance(ended_ms, (int, float)) or isinstance(ended_ms, bool) or ended_ms <= end.end_time_ms:
        return False
    _log.info(
        "Left run %s FINISHED at %s: an end from before that (%s at %d, a spooled end delivered late) came after it",
        end.run_id, ended_ms, RunStatus(end.status).name, end.end_time_ms,
    )
    return True
