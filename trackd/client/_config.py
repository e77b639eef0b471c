"""Client settings: defaults beside the class, and where the environment overrides them."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._limits import MAX_SECONDS
from ..errors import InvalidArgument
from .._paths import default_socket_path
from .._struct import Value
from ._spool import default_spool_dir

# The sender wakes at least this often; it bounds how long an event waits in the process, and so
# what SIGKILL can lose (see docs/guarantees.md).
DEFAULT_FLUSH_INTERVAL = 0.05
# Events held in the process before the on-full policy applies: a metric tuple costs ~145 bytes,
# so ~3.6 MB when full. A burst faster than the daemon writes fills it whatever its size, so its
# size is what the process's peak memory pays: a 1M-point burst peaked at +21.4 MB over a bare
# interpreter with 50,000 and +18.2 MB with 25,000 (bench_client_memory, medians of 5,
# 2026-11-26); 1 and 4 producers gave the same durable points/s with 20,000 as with 50,000
# (bench_throughput, within run-to-run noise), so 25,000 costs nothing there either. At 10,000 points/s it still holds 2.5 s of logging.
DEFAULT_MAX_BUFFERED = 25_000
# Bytes of inline artifact content (log_text, log_dict, log_artifact of files up to
# MAX_INLINE_ARTIFACT_SIZE, 8 MiB) held in the buffer before the on-full policy applies. The
# event bound counts an artifact as one event: 25,000 of them are up to 200 GiB, and a loop of
# 1 MiB log_text calls beside a stopped daemon grew the process by 512 MB in 0.4 s. 64 MiB is
# eight of the largest inline artifacts, so a burst of checkpoints' logs still goes without waiting.
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
# Batches sent but not yet acknowledged (kept, encoded, for resending after a reconnect): at most
# this many events and bytes. The events bound is two of the daemon's largest writes (65,536
# events), so one is written while the next arrives. A metric series packs to ~20 bytes a point,
# a plain metric record (points spread over many runs and keys, no cycle) to ~70; a bound of
# 4 MiB alone held 200,000 series points, more than needed, and only ~60,000 plain records, which
# left a write over 10,000 files ~3 points per file. With these two bounds (2026-11-26, medians):
# 10,000 files 290k -> 347k points/s (bench_scale), the client's RSS after a 1M-point burst 28.0 ->
# 27.1 MB (bench_client_memory), and 1 and 4 producers unchanged (bench_throughput).
DEFAULT_MAX_UNACKED_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_UNACKED_EVENTS = 131_072
# How long interpreter exit and end_run() wait for delivery before warning and giving up.
DEFAULT_EXIT_TIMEOUT = 10.0
# How long a request (set_experiment, flush barrier set-up) waits for a daemon to answer or start.
DEFAULT_CONNECT_TIMEOUT = 10.0
ON_FULL_POLICIES = ("block", "drop")
AUTOSTART_ON = ("1", "true", "yes", "on")
AUTOSTART_OFF = ("0", "false", "no", "off")


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


# What each checked field accepts, and the words for it: ClientConfig names the field when a value
# fails, from_env names the variable it came from.
_SECONDS_ABOVE_ZERO = (lambda v: _is_number(v) and 0 < v <= MAX_SECONDS, f"a number of seconds above 0, at most {MAX_SECONDS:.0f}")
_SECONDS = (lambda v: _is_number(v) and 0 <= v <= MAX_SECONDS, f"a number of seconds, 0 or more, at most {MAX_SECONDS:.0f}")
_AT_LEAST_ONE = (lambda v: type(v) is int and v >= 1, "a whole number of at least 1")
_BOOL = (lambda v: type(v) is bool, f"one of {', '.join(AUTOSTART_ON + AUTOSTART_OFF)} (any case)")
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    # The sender thread waits this long in poll(): 0 would spin, a negative value raises there.
    "flush_interval": _SECONDS_ABOVE_ZERO,
    "max_buffered": _AT_LEAST_ONE,
    "max_buffered_bytes": _AT_LEAST_ONE,
    "max_unacked_events": _AT_LEAST_ONE,
    "max_unacked_bytes": _AT_LEAST_ONE,
    "on_full": (lambda v: v in ON_FULL_POLICIES, f"one of {', '.join(ON_FULL_POLICIES)} (any case)"),
    # 0: exit, end_run and close() do not wait; what is not acknowledged yet goes to the spool.
    "exit_timeout": _SECONDS,
    # 0 could never complete a handshake: every event would be spooled with a healthy daemon.
    "connect_timeout": _SECONDS_ABOVE_ZERO,
    "autostart": _BOOL,
    "artifact_snapshot": _BOOL,
}


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _parse_word(text: str) -> str:
    """A word from a closed set (TRACKD_ON_FULL): any case, as TRACKD_AUTOSTART's words are."""
    return text.strip().lower()


def _parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered in AUTOSTART_ON else False if lowered in AUTOSTART_OFF else None


# The variables from_env reads into fields; a parser returns None for text it cannot read.
_ENV_FIELDS: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("TRACKD_FLUSH_INTERVAL", "flush_interval", _parse_float),
    ("TRACKD_MAX_BUFFERED", "max_buffered", _parse_int),
    ("TRACKD_MAX_BUFFERED_BYTES", "max_buffered_bytes", _parse_int),
    ("TRACKD_ON_FULL", "on_full", _parse_word),
    ("TRACKD_EXIT_TIMEOUT", "exit_timeout", _parse_float),
    ("TRACKD_CONNECT_TIMEOUT", "connect_timeout", _parse_float),
    ("TRACKD_AUTOSTART", "autostart", _parse_bool),
    ("TRACKD_ARTIFACT_SNAPSHOT", "artifact_snapshot", _parse_bool),
)


class ClientConfig(Value):
    """How a Client delivers events; ``ClientConfig.from_env()`` reads the TRACKD_* variables."""

    __slots__ = (
        "socket_path", "flush_interval", "max_buffered", "max_buffered_bytes", "max_unacked_bytes", "max_unacked_events", "on_full",
        "exit_timeout", "connect_timeout", "autostart", "artifact_snapshot", "spool_dir",
    )

    def __init__(
        self,
        *,
        socket_path: Path | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES,
        max_unacked_events: int = DEFAULT_MAX_UNACKED_EVENTS,
        on_full: str = "block",
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        autostart: bool = True,
        # Copy a file over MAX_INLINE_ARTIFACT_SIZE at log_artifact(s), into the media folder beside
        # the spool, for the daemon to copy from (MLflow copies before it returns: a ported script
        # deletes or rewrites the file at once). False: the daemon copies from the file itself,
        # which must stay unchanged until flush() returns (a file too large to copy twice).
        artifact_snapshot: bool = True,
        # Where events go while no daemon can be reached (delivered later, or by `trackd sync`).
        spool_dir: Path | None = None,
    ) -> None:
        self.socket_path: Path = default_socket_path() if socket_path is None else socket_path
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self.max_unacked_bytes = max_unacked_bytes
        self.max_unacked_events = max_unacked_events
        # Any case, as from TRACKD_ON_FULL ("DROP" was refused there while "OFF" was a word for autostart).
        self.on_full = _parse_word(on_full) if type(on_full) is str else on_full
        self.exit_timeout = exit_timeout
        self.connect_timeout = connect_timeout
        self.autostart = autostart
        self.artifact_snapshot = artifact_snapshot
        self.spool_dir: Path = default_spool_dir() if spool_dir is None else spool_dir
        for field, (accepts, expected) in _CHECKS.items():
            value = getattr(self, field)
            if not accepts(value):
                raise ValueError(f"ClientConfig {field} must be {expected}, got {value!r}.")

    @classmethod
    def from_env(cls) -> ClientConfig:
        """The config the TRACKD_* variables describe; a bad value raises ValueError naming the variable."""
        values: dict[str, Any] = {}
        for variable, field, parse in _ENV_FIELDS:
            raw = os.environ.get(variable, "")
            if raw == "":
                continue  # unset or empty: the default
            value = parse(raw)
            accepts, expected = _CHECKS[field]
            if value is None or not accepts(value):
                raise ValueError(f"Environment variable {variable}={raw!r} is not valid: expected {expected}.")
            values[field] = value
        return cls(socket_path=default_socket_path(), spool_dir=default_spool_dir(), **values)


def resolve_tracking_uri(uri: str | os.PathLike[str] | None = None) -> str:
    """The absolute store path: the folder of ``resolve_store_uri(uri)``."""
    return store_root_of(resolve_store_uri(uri))


def store_root_of(store_uri: str) -> str:
    """The absolute folder a URI from ``resolve_store_uri`` names."""
    return str(Path(uri_to_path(store_uri)).absolute())


def require_folder_path(root: str) -> None:
    """Refuse a store root that is, or lies under, something other than a folder.

    The nearest part of ``root`` that exists must be a folder: the daemon makes the rest. MLflow's
    FileStore makes the root when it is created (``os.makedirs``), at start_run, and raises "Not a
    directory" there; trackd's calls return before the daemon writes, so a store under a file took
    every run and point and only ``flush()`` said "[Errno 20] Not a directory". Checked where a
    Client is made (a stat or two), never on a logging call.
    """
    from ..store._confinement import deepest_existing

    path = deepest_existing(root)
    if os.path.isdir(path):
        return
    found = "a file" if os.path.isfile(path) else "a symbolic link to nothing" if os.path.islink(path) else "not a folder"
    where = "it" if path == root else f"{path!r}, the part of it that exists,"
    raise InvalidArgument(
        f"Invalid store root {root!r}: {where} is {found}, so the store's folders cannot be made there. Expected a "
        "folder, or a path whose existing part is a folder."
    )


def resolve_store_uri(uri: str | os.PathLike[str] | None = None) -> str:
    """The store's URI as MLflow resolves it: ``uri``, else TRACKD_TRACKING_URI, else a path-like
    MLFLOW_TRACKING_URI, else MLflow's default ``file:///<cwd>/mlruns``.

    MLflow's file store puts new experiments under this URI (``FileStore(store_uri, store_uri)``
    makes it the artifact root), in its form: a plain path gives plain paths, a ``file:`` URI gives
    ``file:`` URIs. A relative one is made absolute in this folder (MLflow's resolve_uri_if_local),
    so the store stays the same after a chdir and in a child started elsewhere.
    """
    variable = None  # the environment variable the URI came from, if any
    if uri is None and (uri := os.environ.get("TRACKD_TRACKING_URI") or None) is not None:
        variable = "TRACKD_TRACKING_URI"
    if uri is None:
        mlflow_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if mlflow_uri and _is_path_uri(mlflow_uri):
            uri, variable = mlflow_uri, "MLFLOW_TRACKING_URI"
        elif mlflow_uri:
            _warn_server_uri_skipped(mlflow_uri)
    if uri is None:
        # MLflow 2's default, and 3's when ./mlruns holds experiments: path_to_local_file_uri(abspath("mlruns")).
        return Path("mlruns").absolute().as_uri()
    if not isinstance(uri, str):
        text = os.fspath(uri)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A name that is not UTF-8 ('mlruns-\udcff'): as_uri() percent-encodes its byte, which
            # came back as another folder ('mlruns-\ufffd'). Left a path, which the store root's
            # check refuses, naming it.
            return os.path.abspath(text)
        # MLflow's set_tracking_uri turns a pathlib.Path into uri.absolute().resolve().as_uri().
        return Path(text).absolute().resolve().as_uri()
    from ..store._layout import resolve_local_uri

    try:
        uri_to_path(uri)  # refuses other schemes, and file: URIs naming another host
    except ValueError as exc:
        if variable is None:
            raise
        # The code set no URI: say where this one came from.
        raise ValueError(f"Environment variable {variable}={uri!r} is not valid: {exc}") from None
    return resolve_local_uri(uri)


_warned_server_uri = False


def _warn_server_uri_skipped(mlflow_uri: str) -> None:
    """Once per process: a team's MLFLOW_TRACKING_URI names a tracking server, and runs that the
    user expects there go to a local folder instead."""
    global _warned_server_uri
    if not _warned_server_uri:
        _warned_server_uri = True
        from ._outbox import warn

        warn(
            f"MLFLOW_TRACKING_URI={mlflow_uri} is not a local folder, and trackd writes only to one: logging to "
            f"{Path('mlruns').absolute()} (set TRACKD_TRACKING_URI or call set_tracking_uri() to choose the folder)."
        )


def _is_path_uri(uri: str) -> bool:
    if uri in _SERVER_WORDS:
        return False
    scheme = urllib.parse.urlparse(uri).scheme
    # A one-letter scheme is a Windows drive, not a URI scheme.
    return scheme in ("", "file") or len(scheme) == 1


# Tracking URIs MLflow reads as a server although they have no scheme: not folders named so.
_SERVER_WORDS = frozenset(("databricks", "databricks-uc"))

# The hosts MLflow's is_local_uri takes in a file: URI as this machine (it compares with startswith).
_LOCAL_HOSTS = (".", "localhost", "127.0.0.1")


def uri_to_path(uri: str) -> str:
    """Turn a ``file:`` URI or a plain path into a path; refuse other schemes."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        # MLflow's is_local_uri refuses a file: URI naming another host ("... is not a valid remote
        # uri"); the path alone would be a wrong folder: file://mlruns has host "mlruns" and an empty
        # path, which was the working folder itself.
        if parsed.hostname and not parsed.hostname.startswith(_LOCAL_HOSTS):
            raise ValueError(
                f"Tracking URI {uri!r} names the host {parsed.hostname!r}: trackd writes to a local folder, so a "
                "file: URI needs no host or localhost. Expected file:///absolute/path, file:relative/path or a plain path."
            )
        return urllib.parse.unquote(parsed.path)  # url2pathname on POSIX, without importing urllib.request
    if not _is_path_uri(uri):
        raise ValueError(
            f"trackd writes to a local ./mlruns folder; tracking URI {uri!r} is not a path or file: URI."
        )
    return uri
