"""Records: the tracking operations that travel inside a Batch.

A record is a plain tuple whose first item is its ``RecordKind``. Tuples, not event objects, because
the client's hot path builds one per logging call and msgpack packs a tuple with no conversion.
This module owns each kind's layout (``RECORD_FIELDS``) and the structural checks that the daemon
runs on every record it receives. MLflow's own rules (key patterns, value lengths) are the store's
and are checked there. How the sender packs metric points into series is ``_series``'s.
"""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Callable
from stat import S_IFDIR, S_IFREG
from typing import Any

from .._words import counted
from ..errors import LocalProtocolError
from ._limits import (
    MAX_INLINE_ARTIFACT_SIZE,
    MAX_INT64,
    MAX_NAME_LENGTH,
    MAX_RECORDS_PER_BATCH,
    MAX_TAGS_PER_RECORD,
    MAX_TEXT_LENGTH,
    MIN_INT64,
)

Record = tuple[Any, ...]


class RecordKind(enum.IntEnum):
    """What a record asks the store to do."""

    METRIC = 1
    PARAM = 2
    TAG = 3
    DELETE_TAG = 4
    CREATE_RUN = 5
    SET_TERMINATED = 6
    ARTIFACT = 7
    # Every point of one metric of one run in a batch, as three columns: what a training loop sends.
    METRIC_SERIES = 8


# The layout of each record after its kind. Encoding is the tuple itself; decoding checks it
# against this table, so both directions share one definition.
RECORD_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.METRIC: ("run_id", "key", "value", "timestamp_ms", "step"),
    RecordKind.PARAM: ("run_id", "key", "value"),
    RecordKind.TAG: ("run_id", "key", "value"),
    RecordKind.DELETE_TAG: ("run_id", "key"),
    # Creating a run is "ensure": every rank of a distributed job may send it for the same run id.
    # owner: true from the process that owns the run (rank 0, the process that started it), whose
    # name, tags and start time the run takes even if another process's create reached the store
    # first; false from one that only makes sure the run exists (another rank, a process attached
    # to its parent's run, a forked child sending its parent's create again), which changes
    # nothing of a run that exists.
    RecordKind.CREATE_RUN: ("run_id", "experiment_id", "user_id", "run_name", "start_time_ms", "tags", "owner"),
    # keep_failure: a run FAILED or KILLED already stays so (an end the client makes by itself, at
    # a block's exit, at exit or on SIGTERM, must not hide that another rank or worker failed it).
    # unless_owned: a shared end, written only if no other live process owns the run when its
    # batch is written (it then only detaches): a job resuming a RUNNING run co-owns it with
    # whoever else still does, and the last owner to end it ends it (see termination_shared).
    RecordKind.SET_TERMINATED: ("run_id", "status", "end_time_ms", "keep_failure", "unless_owned"),
    # Exactly one of content (bytes) and source_path (a file the daemon copies) is set. With a
    # source_path, source_stamp is the file's [size, mtime_ns] when it was logged: the daemon
    # refuses to copy a file that changed since (rewritten in place, or made anew), which it
    # used to copy silently, storing the later content under the earlier name.
    # mode: what MLflow's copy keeps of the source (shutil.copy2 keeps a file's mode, and its
    # copy of a folder makes every sub-folder, empty ones too), as st_mode's type and permission
    # bits, the way git's tree entries say 100755 and 040000: ARTIFACT_FILE | permissions for a
    # file, ARTIFACT_FOLDER alone for an empty folder (no content, no source_path; MLflow makes
    # folders with its default mode). nil: a file of the store's default mode.
    RecordKind.ARTIFACT: ("run_id", "path", "content", "source_path", "source_stamp", "mode"),
    # Equal-length arrays, point i being (values[i], timestamps_ms[i], steps[i]), in logging order.
    # The sender makes them from METRIC records (metric_series()); a series is 1 to
    # MAX_RECORDS_PER_BATCH points, and a batch's points together are at most that many.
    RecordKind.METRIC_SERIES: ("run_id", "key", "values", "timestamps_ms", "steps"),
}

METRIC = RecordKind.METRIC.value
PARAM = RecordKind.PARAM.value
TAG = RecordKind.TAG.value
DELETE_TAG = RecordKind.DELETE_TAG.value
CREATE_RUN = RecordKind.CREATE_RUN.value
SET_TERMINATED = RecordKind.SET_TERMINATED.value
ARTIFACT = RecordKind.ARTIFACT.value
METRIC_SERIES = RecordKind.METRIC_SERIES.value

# An ARTIFACT record's mode: st_mode's file type bits, and the permission bits a file may carry
# (setuid, setgid and sticky are not kept: a store may be shared with a group).
ARTIFACT_FILE = S_IFREG
ARTIFACT_FOLDER = S_IFDIR
ARTIFACT_PERMISSIONS = 0o777


def _name(record: Record, index: int, field: str) -> None:
    value = record[index]
    if type(value) is not str or not value or len(value) > MAX_NAME_LENGTH:
        raise LocalProtocolError(
            f"{_label(record)} field {field!r} must be a non-empty string of at most "
            f"{MAX_NAME_LENGTH} characters, got {_show(value)}."
        )


def _text(record: Record, index: int, field: str) -> None:
    value = record[index]
    if type(value) is not str or len(value) > MAX_TEXT_LENGTH:
        raise LocalProtocolError(
            f"{_label(record)} field {field!r} must be a string of at most {MAX_TEXT_LENGTH} "
            f"characters, got {_show(value)}."
        )


def _int64(record: Record, index: int, field: str, minimum: int = MIN_INT64) -> None:
    value = record[index]
    if type(value) is not int or not minimum <= value <= MAX_INT64:
        raise LocalProtocolError(
            f"{_label(record)} field {field!r} must be an integer from {minimum} to {MAX_INT64}, "
            f"got {_show(value)}."
        )


def _check_metric(record: Record) -> None:
    _name(record, 1, "run_id")
    _name(record, 2, "key")
    value = record[3]
    # msgpack gives float or int; bool is an int subclass that MLflow refuses as a metric value.
    # An int must also fit in int64: msgpack cannot pack a larger one, so it would pass this check
    # and then fail with OverflowError in Connection.send.
    if type(value) is not float and (type(value) is not int or not MIN_INT64 <= value <= MAX_INT64):
        raise LocalProtocolError(
            f"{_label(record)} field 'value' must be a float or an integer from {MIN_INT64} to {MAX_INT64}, "
            f"got {_show(value)}."
        )
    _int64(record, 4, "timestamp_ms", 0)
    _int64(record, 5, "step")


def _check_key_value(record: Record) -> None:
    _name(record, 1, "run_id")
    _name(record, 2, "key")
    _text(record, 3, "value")


def _check_delete_tag(record: Record) -> None:
    _name(record, 1, "run_id")
    _name(record, 2, "key")


def _check_create_run(record: Record) -> None:
    _name(record, 1, "run_id")
    _name(record, 2, "experiment_id")
    _text(record, 3, "user_id")
    _text(record, 4, "run_name")
    _int64(record, 5, "start_time_ms", 0)
    tags = record[6]
    if type(tags) is not dict or len(tags) > MAX_TAGS_PER_RECORD:
        raise LocalProtocolError(
            f"{_label(record)} field 'tags' must be a map of at most {MAX_TAGS_PER_RECORD} entries, "
            f"got {_show(tags)}."
        )
    for key, value in tags.items():
        if type(key) is not str or type(value) is not str or len(key) > MAX_NAME_LENGTH or len(value) > MAX_TEXT_LENGTH:
            raise LocalProtocolError(
                f"{_label(record)} tag {_show(key)} must map a string key to a string value, got {_show(value)}."
            )
    if len(record) > _CREATE_RUN_WITHOUT_OWNER and type(record[7]) is not bool:
        raise LocalProtocolError(f"{_label(record)} field 'owner' must be true or false, got {_show(record[7])}.")


def _check_set_terminated(record: Record) -> None:
    _name(record, 1, "run_id")
    _int64(record, 2, "status", 0)
    _int64(record, 3, "end_time_ms", 0)
    if len(record) > _LEGACY_SET_TERMINATED_LENGTH and type(record[4]) is not bool:
        raise LocalProtocolError(f"{_label(record)} field 'keep_failure' must be true or false, got {_show(record[4])}.")
    if len(record) > _SET_TERMINATED_WITHOUT_SHARED and type(record[5]) is not bool:
        raise LocalProtocolError(f"{_label(record)} field 'unless_owned' must be true or false, got {_show(record[5])}.")


def _check_artifact(record: Record) -> None:
    _name(record, 1, "run_id")
    _name(record, 2, "path")
    content, source_path = record[3], record[4]
    stamp = record[5] if len(record) > _ARTIFACT_WITHOUT_STAMP else None
    mode = record[6] if len(record) > _ARTIFACT_WITHOUT_MODE else None
    if mode is not None and (
        type(mode) is not int or mode & ~ARTIFACT_PERMISSIONS not in (ARTIFACT_FILE, ARTIFACT_FOLDER)
        or (mode & ~ARTIFACT_PERMISSIONS == ARTIFACT_FOLDER and mode != ARTIFACT_FOLDER)
    ):
        raise LocalProtocolError(
            f"{_label(record)} field 'mode' must be nil, {ARTIFACT_FILE:#o} plus permission bits of at most "
            f"{ARTIFACT_PERMISSIONS:#o} (a file), or {ARTIFACT_FOLDER:#o} (an empty folder), got {_show(mode)}."
        )
    if mode == ARTIFACT_FOLDER:
        if content is not None or source_path is not None or stamp is not None:
            raise LocalProtocolError(
                f"{_label(record)} of a folder (mode {ARTIFACT_FOLDER:#o}) must have nil 'content', 'source_path' "
                f"and 'source_stamp', got {_show(content)}, {_show(source_path)} and {_show(stamp)}."
            )
        return
    if stamp is not None and (
        source_path is None or type(stamp) is not tuple or len(stamp) != 2
        or any(type(part) is not int or not low <= part <= MAX_INT64 for part, low in zip(stamp, (0, MIN_INT64)))
    ):
        # mtime_ns is signed: a file dated before 1970 (unpacked from an archive, utime'd by a
        # build tool) has a negative one, and refusing it cost the whole batch, not one artifact.
        raise LocalProtocolError(
            f"{_label(record)} field 'source_stamp' must be nil or, with a 'source_path', an array of two "
            f"integers (size from 0 to {MAX_INT64}, mtime_ns from {MIN_INT64} to {MAX_INT64}), got {_show(stamp)}."
        )
    if content is None and source_path is not None:
        _name(record, 4, "source_path")
    elif source_path is None and type(content) is bytes:
        if len(content) > MAX_INLINE_ARTIFACT_SIZE:
            raise LocalProtocolError(
                f"{_label(record)} field 'content' holds {len(content)} bytes; at most "
                f"{MAX_INLINE_ARTIFACT_SIZE} bytes travel inline, larger files go by 'source_path'."
            )
    else:
        raise LocalProtocolError(
            f"{_label(record)} needs exactly one of 'content' (bytes) and 'source_path' (string), "
            f"got {_show(content)} and {_show(source_path)}."
        )


_NUMBER_TYPES = frozenset((float, int))


def _check_metric_series(record: Record) -> None:
    """Check a series column by column: set(map(type, ...)), min() and max() run in C."""
    _name(record, 1, "run_id")
    _name(record, 2, "key")
    values, timestamps, steps = record[3], record[4], record[5]
    for index, field in ((3, "values"), (4, "timestamps_ms"), (5, "steps")):
        column = record[index]
        if (type(column) is not tuple and type(column) is not list) or not 0 < len(column) <= MAX_RECORDS_PER_BATCH:
            raise LocalProtocolError(
                f"{_label(record)} field {field!r} must be an array of 1 to {MAX_RECORDS_PER_BATCH} items, "
                f"got {_show(column)}."
            )
    if not len(values) == len(timestamps) == len(steps):
        raise LocalProtocolError(
            f"{_label(record)} has {len(values)} values, {len(timestamps)} timestamps and {len(steps)} "
            "steps; the three arrays must have the same length."
        )
    value_types = set(map(type, values))
    if not value_types <= _NUMBER_TYPES or (
        int in value_types and not all(MIN_INT64 <= v <= MAX_INT64 for v in values if type(v) is int)
    ):
        bad = next(v for v in values if type(v) is not float and (type(v) is not int or not MIN_INT64 <= v <= MAX_INT64))
        raise LocalProtocolError(
            f"{_label(record)} field 'values' must hold floats or integers from {MIN_INT64} to {MAX_INT64}, "
            f"got {_show(bad)}."
        )
    for column, field, minimum in ((timestamps, "timestamps_ms", 0), (steps, "steps", MIN_INT64)):
        if set(map(type, column)) != {int} or min(column) < minimum or max(column) > MAX_INT64:
            bad = next(v for v in column if type(v) is not int or not minimum <= v <= MAX_INT64)
            raise LocalProtocolError(
                f"{_label(record)} field {field!r} must hold integers from {minimum} to {MAX_INT64}, got {_show(bad)}."
            )


_CHECKS: dict[int, Callable[[Record], None]] = {
    METRIC: _check_metric,
    PARAM: _check_key_value,
    TAG: _check_key_value,
    DELETE_TAG: _check_delete_tag,
    CREATE_RUN: _check_create_run,
    SET_TERMINATED: _check_set_terminated,
    ARTIFACT: _check_artifact,
    METRIC_SERIES: _check_metric_series,
}
_LENGTHS: dict[int, int] = {kind.value: len(fields) + 1 for kind, fields in RECORD_FIELDS.items()}
# SET_TERMINATED without keep_failure, as protocol 2 wrote it: still read (as False), so that a
# spool file an older trackd left behind is delivered after an upgrade.
_LEGACY_SET_TERMINATED_LENGTH = 4
# And without unless_owned (5 items), as protocols 3 to 9 wrote it: not shared (termination_shared).
_SET_TERMINATED_WITHOUT_SHARED = 5
# ARTIFACT without source_stamp (5 items), as protocol 3 wrote it: copied unchecked, as it was then. And
# without mode (6 items), as protocols 4 and 5 wrote it: a file of the store's default mode.
_ARTIFACT_WITHOUT_STAMP = 5
_ARTIFACT_WITHOUT_MODE = 6
# CREATE_RUN without owner (7 items), as protocols 6 and 7 wrote it: see create_run_owner.
_CREATE_RUN_WITHOUT_OWNER = 7
_LEGACY_LENGTHS: dict[int, tuple[int, ...]] = {
    SET_TERMINATED: (_LEGACY_SET_TERMINATED_LENGTH, _SET_TERMINATED_WITHOUT_SHARED),
    ARTIFACT: (_ARTIFACT_WITHOUT_STAMP, _ARTIFACT_WITHOUT_MODE),
    CREATE_RUN: (_CREATE_RUN_WITHOUT_OWNER,),
}


def create_run_owner(record: Record) -> bool:
    """Whether a checked CREATE_RUN record comes from the run's owner (see RECORD_FIELDS).

    A record without the field (protocols 6 and 7, and spool files they wrote) is not: those
    clients sent the same record from every rank, from an attached spawn worker and from a forked
    child sending its parent's create again, so none of them can be told from the owner's. Read
    as an owner's, the last of them to arrive would rename the run and overwrite its tags (a
    rank's random name over rank 0's, a parent's old name over its set_tag rename); read as an
    attach, the first one makes the run and the others change nothing, as those versions did.
    """
    return len(record) > _CREATE_RUN_WITHOUT_OWNER and record[7] is True


def termination_shared(record: Record) -> bool:
    """Whether a checked SET_TERMINATED record is a shared end (``unless_owned``, see RECORD_FIELDS).

    A record without the field (protocols 2 to 9, and their spool files) is not: those clients set
    keep_failure also on the FAILED an exception leaving a block sends from any rank, attached ones
    included, which read as shared would leave rank 0's live run RUNNING. Their stale spooled ends
    are left out by the store instead (a FINISHED run that ended later stays so).
    """
    return len(record) > _SET_TERMINATED_WITHOUT_SHARED and record[5] is True


def attach_creation(record: Record) -> Record:
    """The same CREATE_RUN record as one that only makes sure the run exists (owner false)."""
    return (*record[:_CREATE_RUN_WITHOUT_OWNER], False)


def check_record(record: object) -> None:
    """Raise LocalProtocolError unless ``record`` is a well-formed record of a known kind."""
    if type(record) is not tuple or not record:
        raise LocalProtocolError(f"A record must be a non-empty array, got {_show(record)}.")
    kind = record[0]
    # A RecordKind member is accepted as the int it packs to; bool is not, though True == 1.
    check = _CHECKS.get(kind) if type(kind) is int or type(kind) is RecordKind else None
    if check is None:
        raise LocalProtocolError(
            f"Unknown record kind {_show(kind)}; expected one of {sorted(_CHECKS)}."
        )
    if len(record) != _LENGTHS[kind] and len(record) not in _LEGACY_LENGTHS.get(kind, ()):
        raise LocalProtocolError(
            f"{_label(record)} has {counted(len(record) - 1, 'field')}; expected {_LENGTHS[kind] - 1} "
            f"({', '.join(RECORD_FIELDS[RecordKind(kind)])})."
        )
    check(record)


def check_records(records: list[Record]) -> int:
    """check_record() for every record, with an inlined path for well-formed metric records.

    Returns how many events (points, params, tags, ...) the records hold: a metric series counts
    its points. A batch is mostly metric points and the daemon checks every one of them, so the
    common case is one expression instead of seven calls; anything it does not accept goes
    through check_record(), which raises with the field named.
    """
    name_max, lo, hi = MAX_NAME_LENGTH, MIN_INT64, MAX_INT64
    events = 0
    for r in records:
        if type(r) is tuple and len(r) == 6:
            # One unpacking instead of a subscript per test.
            kind, run_id, key, value, timestamp_ms, step = r
            if (
                type(kind) is int
                and kind == METRIC
                and type(run_id) is str
                and 0 < len(run_id) <= name_max
                and type(key) is str
                and 0 < len(key) <= name_max
                and (type(value) is float or (type(value) is int and lo <= value <= hi))
                and type(timestamp_ms) is int
                and 0 <= timestamp_ms <= hi
                and type(step) is int
                and lo <= step <= hi
            ):
                events += 1
                continue
        check_record(r)
        events += len(r[3]) if r[0] == METRIC_SERIES else 1
    return events


def _label(record: Record) -> str:
    try:
        return f"{RecordKind(record[0]).name.lower().replace('_', ' ')} record"
    except ValueError:
        return "record"


def _show(value: object) -> str:
    """A short repr for messages, so a 10 MB garbage string never lands in a log line."""
    return _SHORT_REPR.repr(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = 60
_SHORT_REPR.maxother = 60
