"""MLflow's rules for keys, values and ids, stricter where MLflow writes what it cannot read back.

Each rule quotes ``mlflow/utils/validation.py`` (3.17.2). Every function raises
``trackd.errors.InvalidArgument`` with a sentence naming the item, the value found and what was
expected, and returns the value in the form the store writes. The client calls these on every
logging call, so the common case (a str key, a float value, an int step) is tested first.
"""

from __future__ import annotations

import base64
import json
import numbers
import operator
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from ..errors import InvalidArgument
from ._entities import PagedList, RunStatus, ViewType
from ._layout import ARTIFACTS_FOLDER_NAME, RESERVED_EXPERIMENT_FOLDERS, file_uri_to_path, path_to_file_uri, resolve_local_uri

MAX_KEY_LENGTH = 250
# MLflow's MAX_PARAM_VAL_LENGTH: longer values are truncated (or refused) by every param call.
MAX_PARAM_VALUE_LENGTH = 6000
# MLflow's MAX_TAG_VAL_LENGTH: log_batch (and so the fluent set_tags) truncates a longer tag value;
# set_tag and create_run store it whole.
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_ARTIFACT_LOCATION_LENGTH = 2048
# Linux's NAME_MAX (and macOS's): a file or folder name holds at most 255 bytes. A run id, an
# experiment id, each '/'-separated part of a key and of an artifact path is such a name in the
# store. MLflow counts characters (a key of at most 250): 250 CJK characters pass that and are
# 750 bytes in UTF-8, which the write then refuses ("File name too long"). A piece of at most
# 63 characters is at most 252 bytes, so only longer ones are encoded to be measured.
MAX_FILE_NAME_BYTES = 255
_ALWAYS_FITS = MAX_FILE_NAME_BYTES // 4
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
# mlflow/store/tracking/__init__.py: a search returns this many by default, and at most the threshold.
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50_000
T = TypeVar("T")

# validate_param_and_metric_name uses re.match(r"^[/\w.\- :]*$"): "$" also matches before a final
# newline, so MLflow accepts "x\n" and creates a file named "x\n". fullmatch closes that hole.
_KEY_PATTERN = re.compile(r"[/\w.\- :]*")
_KEY_CHARACTERS = "letters, digits, '_', '-', '.', ' ', ':' and '/'"
_LONGEST_RESERVED = max(map(len, RESERVED_EXPERIMENT_FOLDERS))
_RUN_ID_PATTERN = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # _RUN_ID_REGEX
_EXPERIMENT_ID_PATTERN = re.compile(r"[a-zA-Z0-9][\w\-]{0,63}")  # _EXPERIMENT_ID_REGEX


def validate_key(key: object, *, kind: str) -> str:
    """A param, metric or tag key: ``kind`` ("param", "metric", "tag") names it in the message."""
    if type(key) is not str:
        raise InvalidArgument(f"Invalid {kind} key {key!r}: expected a str, got {type(key).__name__}.")
    if not key:
        raise InvalidArgument(f"Invalid {kind} key '': keys must not be empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            f"Invalid {kind} key {key[:40]!r}...: it has {len(key)} characters, "
            f"and MLflow allows at most {MAX_KEY_LENGTH}."
        )
    _check_key_path(key, kind)
    if not key.isascii():  # an ASCII key of at most 250 characters always fits
        _require_file_names(key, f"{kind} key")
    return key


def validate_key_to_read(key: object, *, kind: str) -> str:
    """A key looked up in the store (get_metric_history's): what MLflow's reader checks before it
    joins the key onto the run's folder (_validate_metric_name), its characters and its form as a
    path, not its length. ``"../meta.yaml"`` read another file of the run, and ``"../" * 20 +
    "etc/hostname"`` one outside the store, quoting its first line in the error."""
    if type(key) is not str:
        raise InvalidArgument(f"Invalid {kind} key {key!r}: expected a str, got {type(key).__name__}.")
    if not key:
        raise InvalidArgument(f"Invalid {kind} key '': keys must not be empty.")
    _check_key_path(key, kind)
    return key


def _check_key_path(key: str, kind: str) -> None:
    if _KEY_PATTERN.fullmatch(key) is None:
        raise InvalidArgument(f"Invalid {kind} key {key!r}: keys may contain only {_KEY_CHARACTERS}.")
    # MLflow's path_not_unique: the key is a path under metrics/, params/ or tags/ and must name
    # exactly one file there.
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidArgument(
            f"Invalid {kind} key {key!r}: keys are file paths and must be relative and normalized "
            f"(no leading '/' or '..', no '//', '/./' or trailing '/')."
        )


def _require_file_names(path: str, item: str) -> None:
    """Refuse ``path`` if one of its '/'-separated pieces exceeds MAX_FILE_NAME_BYTES in UTF-8;
    ``item`` ("metric key") names it in the message."""
    for piece in path.split("/"):
        if len(piece) > _ALWAYS_FITS and (size := len(piece.encode("utf-8"))) > MAX_FILE_NAME_BYTES:
            if piece == path:
                found, names, expected = "it is", "it names a file or folder", "at most"
            else:
                found, names, expected = f"its part {_clip(piece)} is", "each '/'-separated part names a file or folder", "each part at most"
            raise InvalidArgument(
                f"Invalid {item} {_clip(path)}: {found} {size} bytes in UTF-8, and {names}, whose "
                f"name may hold at most {MAX_FILE_NAME_BYTES} bytes (the file-name limit, NAME_MAX); expected "
                f"{expected} {MAX_FILE_NAME_BYTES} bytes."
            )


def _clip(text: str) -> str:
    """``text`` quoted, its first 40 characters only when it is longer."""
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}..."


def _validate_text(kind: str, key: str, value: object, limit: int) -> str:
    if type(value) is not str:
        raise InvalidArgument(
            f"Invalid value for {kind} {key!r}: expected a str, got {type(value).__name__}."
        )
    if len(value) > limit:
        raise InvalidArgument(
            f"Invalid value for {kind} {key!r}: it has {len(value)} characters, "
            f"and MLflow allows at most {limit}."
        )
    # isascii() first, inline: log_param and set_tag pay no call (or f-string) for the common case.
    return value if value.isascii() else require_utf8(value, f"value for {kind} {key!r}")


def require_utf8(text: str, item: str) -> str:
    """``text`` if it is valid UTF-8, else InvalidArgument naming ``item`` ("artifact path 'a.txt'").

    A str can hold a lone surrogate, which no UTF-8 text holds: os.fsdecode (os.listdir, a Path's
    name) turns each byte of a file name that is not UTF-8 into one (b"notes-\\xff.txt" becomes
    "notes-\\udcff.txt"). msgpack cannot pack it, so it passed the call site and then cost the
    whole batch it was sent in (up to 10,000 other records), reported only by the next flush().
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(
                f"Invalid {item}: it must be valid UTF-8, and it holds a lone surrogate ({text[exc.start]!r} "
                f"at position {exc.start}: Python's stand-in for a byte that is not UTF-8, as in a file name "
                "from os.listdir); expected valid UTF-8 text."
            ) from None
    return text


def mapping_items(mapping: object, argument: str) -> Iterable[tuple[Any, Any]]:
    """``mapping.items()``: a dict, or anything with ``items()``, as MLflow takes it (a pandas
    Series); anything else (a list of pairs, a str) raises naming the argument, where it raised
    AttributeError ("'list' object has no attribute 'items'") from inside trackd."""
    items = getattr(mapping, "items", None)
    if not callable(items):
        raise InvalidArgument(f"Invalid {argument}: expected a dict of names to values, got {type(mapping).__name__}.")
    return cast("Iterable[tuple[Any, Any]]", items())


def validate_artifact_text(artifact_file: str, text: object) -> bytes:
    """log_text's text: a str, encoded as UTF-8 (MLflow writes it to a file opened in text mode)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"Invalid text for artifact {artifact_file!r}: expected a str, got {type(text).__name__}.")
    return require_utf8(text, f"text for artifact {artifact_file!r}").encode("utf-8")


def validate_param_value(key: str, value: object) -> str:
    """A param value as the store takes it: the caller already applied str() (and truncated it,
    see truncated_value); at most 6000 characters, UTF-8 encodable."""
    return _validate_text("param", key, value, MAX_PARAM_VALUE_LENGTH)


def validate_tag_value(key: str, value: object) -> str:
    """A run tag value: a str, UTF-8 encodable, of any length.

    MLflow's ``FileStore.set_tag`` (and ``create_run``, which sets each tag through it) checks no
    length: a 9000-character tag, a run name or a description (``mlflow.note.content``) of any
    length is stored whole. Only ``log_batch`` bounds a tag, to MAX_TAG_VALUE_LENGTH
    (``_validate_tag``), which the client applies there (truncated_value).
    """
    if type(value) is not str:
        raise InvalidArgument(f"Invalid value for tag {key!r}: expected a str, got {type(value).__name__}.")
    return value if value.isascii() else require_utf8(value, f"value for tag {key!r}")


def truncated_value(kind: str, key: str, value: str, limit: int, *, truncate: bool) -> str:
    """``value`` cut to ``limit`` characters, as MLflow's ``_validate_length_limit(..., truncate=True)``
    does when MLFLOW_TRUNCATE_LONG_VALUES is true (its default); when it is false (``truncate``), a
    longer value raises. ``kind`` ("param", "tag") names it. The caller says that it truncated."""
    if len(value) <= limit:
        return value
    if truncate:
        return value[:limit]
    raise InvalidArgument(
        f"Invalid value for {kind} {key!r}: it has {len(value)} characters, and MLflow allows at most "
        f"{limit}; MLFLOW_TRUNCATE_LONG_VALUES is false, so it is not truncated to {limit} (unset it, or set "
        "it to true, to have it truncated as MLflow does by default)."
    )


def validate_experiment_tag_value(key: str, value: object) -> str:
    """An experiment tag value: a str of at most 20000 characters (_validate_experiment_tag)."""
    return _validate_text("experiment tag", key, value, MAX_EXPERIMENT_TAG_VALUE_LENGTH)


def validate_metric_value(key: str, value: object) -> float:
    """A metric value: a real number (Decimal too), or a NumPy array or scalar, or a PyTorch or
    TensorFlow tensor, holding one, or a str or bytes ``float()`` parses; NaN and +-inf are
    allowed. A bool is 1.0 or 0.0."""
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes)):
        # MLflow's log_metric logs float(value) (convert_metric_value_to_float_if_possible), and its
        # file store takes text in log_metrics and log_batch too (written as given: " 2 " makes a
        # line MLflow cannot read back), so log_metric("acc", "0.93") stores 0.93 there, and code
        # ported with `import trackd as mlflow` raised here. Parsed, the store gets the number.
        try:
            number = float(value)
        except ValueError:
            raise InvalidArgument(
                f"Invalid value {value!r} for metric {key!r}: expected a real number (an int or a float), "
                f"or a {type(value).__name__} float() parses, as MLflow takes."
            ) from None
        return validate_metric_value(key, number)
    if type(value) is bool:
        # MLflow's client casts it before its store sees it (convert_metric_value_to_float_if_possible),
        # and integrations pass bools on: transformers' MLflowCallback keeps every int, bool included.
        return 1.0 if value else 0.0
    if not isinstance(value, (numbers.Number, bool, str, bytes)):
        # MLflow's client logs an array or tensor of one value as that value (`loss` itself, not
        # loss.item(), is what training code passes): .item() is NumPy's and PyTorch's way. A
        # TensorFlow tensor has no .item() (only with enable_numpy_behavior); MLflow's client takes
        # float(tensor) (convert_metric_value_to_float_if_tensorflow_tensor), and so do we.
        kind = type(value)
        convert: Callable[[], object] | None = None
        if callable(getattr(kind, "item", None)):
            convert = value.item  # type: ignore[attr-defined]
        elif callable(getattr(kind, "__float__", None)):
            convert = lambda: float(value)  # type: ignore[arg-type]  # noqa: E731
        if convert is not None:
            try:
                single = convert()
            except (ValueError, RuntimeError, TypeError):
                shape = getattr(value, "shape", None)
                raise InvalidArgument(
                    f"Invalid value for metric {key!r}: expected a real number, or an array or tensor holding one, "
                    f"got {kind.__name__}" + (f" of shape {tuple(shape)}." if shape is not None else ".")
                ) from None
            return validate_metric_value(key, single)
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex):
        value = float(value)  # type: ignore[arg-type]  # a Decimal: a Number, though not a Real
    # _validate_metric: "isinstance(value, numbers.Number)". We also refuse complex, which MLflow
    # accepts and then cannot write as a float, and strings, which MLflow's client would parse.
    if not isinstance(value, numbers.Real):
        raise InvalidArgument(
            f"Invalid value {value!r} for metric {key!r}: expected a real number "
            f"(an int or a float), got {type(value).__name__}."
        )
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgument(
            f"Invalid value {value!r} for metric {key!r}: it is too large for a float."
        ) from None


def _validate_int(what: str, value: object, low: int, high: int) -> int:
    if type(value) is int:
        number = value
    elif isinstance(value, bool):
        raise InvalidArgument(f"Invalid {what}: found {value!r}, expected an int, not a bool.")
    else:
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            raise InvalidArgument(
                f"Invalid {what}: found {value!r} ({type(value).__name__}), expected an int."
            ) from None
    if not low <= number <= high:
        raise InvalidArgument(f"Invalid {what}: found {value!r}, expected an int from {low} to {high}.")
    return number


def validate_step(key: str, step: object) -> int:
    """A metric step: an int64 (MLflow writes a float step and then cannot read the run)."""
    if type(step) is int and MIN_INT64 <= step <= MAX_INT64:
        return step
    return _validate_int(f"step of metric {key!r}", step, MIN_INT64, MAX_INT64)


def validate_timestamp(key: str, timestamp_ms: object) -> int:
    """A metric timestamp in epoch milliseconds: an int from 0 to 2**63 - 1."""
    if type(timestamp_ms) is int and 0 <= timestamp_ms <= MAX_INT64:
        return timestamp_ms
    return _validate_int(f"timestamp of metric {key!r}", timestamp_ms, 0, MAX_INT64)


def validate_run_time(field: str, run_id: str, time_ms: object) -> int:
    """A run's start_time or end_time in epoch milliseconds: an int from 0 to 2**63 - 1."""
    return _validate_int(f"{field} of run {run_id}", time_ms, 0, MAX_INT64)


def validate_run_id(run_id: object) -> str:
    """A run id by MLflow's _RUN_ID_REGEX (generated ids are 32 lowercase hex characters), and at
    most MAX_FILE_NAME_BYTES in UTF-8: it names the run's folder. The regex takes 256 characters,
    but no store can hold a folder of that name."""
    if type(run_id) is not str or _RUN_ID_PATTERN.fullmatch(run_id) is None:
        raise InvalidArgument(
            f"Invalid run id {run_id!r}: expected a str of letters, digits, '_' or '-' that starts with "
            f"a letter or digit, of at most {MAX_FILE_NAME_BYTES} bytes in UTF-8 (it names the run's folder)."
        )
    if len(run_id) > _ALWAYS_FITS:
        _require_file_names(run_id, "run id")
    return run_id


def validate_written_run_id(run_id: object) -> str:
    """validate_run_id's, for a write to a run: none of the names of an experiment's own folders
    (exactly; reads take them, as MLflow's get_run does, and find no run there)."""
    run_id = validate_run_id(run_id)
    if run_id in RESERVED_EXPERIMENT_FOLDERS:
        _refuse_reserved(run_id)
    return run_id


def validate_new_run_id(run_id: object, exists: Callable[[str], bool]) -> str:
    """validate_written_run_id's, for a run to create (or attach to): none of those names in any
    case either, unless ``exists`` says a run of exactly that id is in the store already.

    On a case-insensitive filesystem (macOS's default) a new run "Tags" is written into the
    experiment's tags folder, so it is refused wherever the store may be copied. On Linux a run
    "Models" an older trackd made is a folder of its own, which MLflow reads: it can be attached to.
    """
    run_id = validate_written_run_id(run_id)
    if len(run_id) <= _LONGEST_RESERVED and run_id.lower() in RESERVED_EXPERIMENT_FOLDERS and not exists(run_id):
        _refuse_reserved(run_id)
    return run_id


def _refuse_reserved(run_id: str) -> None:
    """MLflow's FileStore keeps an experiment's tags, datasets, traces and logged models in folders
    of these names beside its runs (RESERVED_EXPERIMENT_FOLDERS), and never lists one as a run. A
    run of such an id was written into that folder: its params, metrics and tags became the
    experiment's tags for get_experiment, and the experiment's later tags landed in the run."""
    reserved = ", ".join(sorted(RESERVED_EXPERIMENT_FOLDERS))
    raise InvalidArgument(
        f"Invalid run id {run_id!r}: MLflow's file store keeps folders of these names in each experiment beside its "
        f"runs ({reserved}, in any case), so a run of that id would be written into the experiment's "
        f"{run_id.lower()} folder, and MLflow never reads one as a run (it makes none with such an id: its "
        f"start_run(run_id={run_id!r}) raises \"Run '{run_id}' not found\"). Expected any other id, such as the "
        "32 hex characters trackd and MLflow generate."
    )


def validate_experiment_id(experiment_id: object) -> str:
    """An experiment id by MLflow's _EXPERIMENT_ID_REGEX; an int (not bool) is turned into its str."""
    if type(experiment_id) is int and experiment_id >= 0:
        return str(experiment_id)
    if type(experiment_id) is not str or _EXPERIMENT_ID_PATTERN.fullmatch(experiment_id) is None:
        raise InvalidArgument(
            f"Invalid experiment id {experiment_id!r}: expected a str of 1 to 64 letters, digits, "
            f"'_' or '-' that starts with a letter or digit."
        )
    # It names the experiment's folder, and always fits one: an ASCII first character and 63 of at
    # most 4 bytes make at most 253 bytes.
    return experiment_id


def validate_experiment_name(name: object) -> str:
    """An experiment name: a non-empty str of at most 500 characters."""
    if type(name) is not str or not name:
        raise InvalidArgument(f"Invalid experiment name {name!r}: expected a non-empty str.")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidArgument(
            f"Invalid experiment name {name[:40]!r}...: it has {len(name)} characters, "
            f"and MLflow allows at most {MAX_EXPERIMENT_NAME_LENGTH}."
        )
    return _validate_text("experiment", "name", name, MAX_EXPERIMENT_NAME_LENGTH)


def check_new_experiment(
    name: str, artifact_location: str | None, tags: Mapping[str, str] | None
) -> tuple[str, dict[str, str]]:
    """``create_experiment``'s arguments checked: the name, and the tags by their keys."""
    name = validate_experiment_name(name)
    checked_tags = {
        validate_key(key, kind="experiment tag"): validate_experiment_tag_value(key, value)
        for key, value in (tags or {}).items()
    }
    if artifact_location is not None:
        require_utf8(artifact_location, f"artifact location {artifact_location!r}")
    if artifact_location is not None and resolve_local_uri(artifact_location) != artifact_location:
        # The client resolves it in its own working folder; the daemon's is /.
        raise InvalidArgument(
            f"Invalid artifact location {artifact_location!r}: a relative path; expected an absolute path or URI."
        )
    if artifact_location is not None and len(artifact_location) > MAX_ARTIFACT_LOCATION_LENGTH:
        raise InvalidArgument(
            f"Invalid artifact location {artifact_location[:40]!r}...: it has "
            f"{len(artifact_location)} characters, and MLflow allows at most "
            f"{MAX_ARTIFACT_LOCATION_LENGTH}."
        )
    return name, checked_tags


def validate_artifact_path(path: object) -> str:
    """An artifact path: relative, POSIX, normalized, without '..' or NUL; it names a file."""
    if type(path) is not str or not path:
        raise InvalidArgument(f"Invalid artifact path {path!r}: expected a non-empty str.")
    if "\x00" in path:
        raise InvalidArgument(f"Invalid artifact path {path!r}: it contains a NUL character.")
    require_utf8(path, f"artifact path {path!r}")
    if (
        path.startswith("/")
        or posixpath.normpath(path) != path
        or path == "."
        or ".." in path.split("/")
    ):
        raise InvalidArgument(
            f"Invalid artifact path {path!r}: expected a normalized relative POSIX path such as "
            f"'plots/loss.png' (no leading '/', no '..', '.', '//' or trailing '/')."
        )
    _require_file_names(path, "artifact path")
    return path


def validate_store_root(root: str | os.PathLike[str]) -> str:
    """The store root as an absolute path; a root below a folder named ``artifacts`` is refused."""
    if "\x00" in os.fspath(root):
        # No file path holds one: every write to such a store raised ValueError, which the daemon's
        # write loop answered by rejecting every client's batches in that write, not only this one's.
        raise InvalidArgument(f"Invalid store root {os.fspath(root)!r}: it contains a NUL character, which no path can hold.")
    # The root travels to the daemon as UTF-8 text (in every Hello), which such a root could not be.
    absolute = require_utf8(os.path.abspath(os.fspath(root)), f"store root {os.fspath(root)!r}")
    if not absolute.isascii() or len(absolute) > _ALWAYS_FITS:
        # The daemon could make no folder of it: every run and point sent to it was refused.
        _require_file_names(absolute, "store root")
    if ARTIFACTS_FOLDER_NAME in absolute.split(os.sep):
        # FileStore._is_valid_run_directory (the ZDI-CAN-26649 / CVE-2026-2033 fix, MLflow 3.10+)
        # rejects every run dir whose absolute path has an `artifacts` component, so MLflow would
        # answer "Run '<id>' not found" for every run of such a store.
        raise InvalidArgument(
            f"Invalid store root {absolute!r}: it lies below a folder named "
            f"'{ARTIFACTS_FOLDER_NAME}', and MLflow (3.10+) treats every run under such a path as "
            f"not found; expected a path without an '{ARTIFACTS_FOLDER_NAME}' component."
        )
    return absolute


def check_artifact_root(root: str, artifact_root: str | None) -> str:
    """The URI under which the store at ``root`` makes new experiments (FileStore's
    ``artifact_root_uri``): ``artifact_root`` once checked to name ``root`` itself, as an absolute
    path or ``file:`` URI; None gives the root's ``file://`` URI (what trackd wrote before protocol 7)."""
    if artifact_root is None:
        return path_to_file_uri(root)
    require_utf8(artifact_root, f"artifact root {artifact_root!r}")
    local = file_uri_to_path(artifact_root)
    if (
        local is None
        or "\x00" in artifact_root
        or resolve_local_uri(artifact_root) != artifact_root
        or os.path.realpath(local) != os.path.realpath(root)
    ):
        raise InvalidArgument(
            f"Invalid artifact root {artifact_root!r} for the store at {root!r}: expected that folder as an "
            f"absolute path ({root}) or a file: URI ({path_to_file_uri(root)}), the forms of MLflow's tracking URI."
        )
    return artifact_root


def validate_run_status(status: object) -> RunStatus:
    """A run status: a RunStatus, its int value or its name ("FINISHED")."""
    if isinstance(status, RunStatus):
        return status
    if type(status) is int and status in RunStatus._value2member_map_:
        return RunStatus(status)
    if type(status) is str and status in RunStatus.__members__:
        return RunStatus[status]
    raise InvalidArgument(
        f"Invalid run status {status!r}: expected one of "
        f"{', '.join(f'{s.name} ({s.value})' for s in RunStatus)}."
    )


def validate_view_type(view_type: object) -> ViewType:
    """A search's view type: a ViewType or its int, as mlflow.entities.ViewType's constants are."""
    if isinstance(view_type, ViewType):
        return view_type
    if type(view_type) is int and view_type in ViewType._value2member_map_:
        return ViewType(view_type)
    raise InvalidArgument(
        f"Invalid view type {view_type!r}: expected one of "
        f"{', '.join(f'ViewType.{v.name} ({v.value})' for v in ViewType)}."
    )


def page_offset(page_token: object) -> int:
    """Where the page a search's ``page_token`` asks for starts, as MLflow's file store reads it.

    MLflow's token (``SearchUtils.create_page_token``) is base64 of ``{"offset": N}``; a token
    MLflow made works here and one made here works there. None or "" is the first page.
    """
    if page_token is None or page_token == "" or page_token == b"":
        return 0
    try:
        decoded = base64.b64decode(page_token, validate=True)  # type: ignore[arg-type]
        offset = json.loads(decoded)["offset"]
    except (TypeError, ValueError, KeyError):  # binascii.Error and JSONDecodeError are ValueErrors
        offset = None
    if type(offset) is not int or offset < 1:
        raise InvalidArgument(f"Invalid page token {page_token!r}: expected the token of an earlier page of this search.")
    return offset


def page_token(offset: int) -> str:
    """The token of the page that starts at ``offset`` (MLflow's format, see page_offset)."""
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_of(items: list[T], offset: int, limit: int) -> PagedList[T]:
    """The page of ``items`` from ``offset``, at most ``limit`` long, as MLflow's ``SearchUtils.paginate``."""
    end = offset + limit
    return PagedList(items[offset:end], page_token(end) if end < len(items) else None)


def validate_max_results(max_results: object, *, minimum: int) -> int:
    """A search's max_results: an int from ``minimum`` to SEARCH_MAX_RESULTS_THRESHOLD.

    FileStore.search_experiments takes 1 and up; _search_runs also takes 0 (no runs).
    """
    if type(max_results) is not int or not minimum <= max_results <= SEARCH_MAX_RESULTS_THRESHOLD:
        raise InvalidArgument(
            f"Invalid max_results {max_results!r}: expected an int from {minimum} to "
            f"{SEARCH_MAX_RESULTS_THRESHOLD} (MLflow's SEARCH_MAX_RESULTS_THRESHOLD)."
        )
    return max_results
