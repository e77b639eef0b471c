"""Each file format of the store, defined once and used by both the writer and the reader.

Formats are MLflow 3.17.2's FileStore: meta.yaml of experiments and runs, and raw UTF-8 param and
tag files (a metric file's lines are ``_metric_lines.py``'s). Also the one way the store replaces a
file: write a temp file, then os.replace, so a reader never sees a half-written file.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CorruptStoreFile, StoreError
from ._entities import LIFECYCLE_ACTIVE, Experiment, RunInfo, RunStatus
from ._layout import temp_file_path


@functools.cache
def _yaml() -> tuple[Any, Any, Any]:
    """PyYAML and its fastest safe dumper and loader, imported on first use (it costs ~12 ms of
    ``import trackd``, and a training process that only logs never reads or writes YAML)."""
    import yaml

    try:
        return yaml, yaml.CSafeDumper, yaml.CSafeLoader
    except AttributeError:  # PyYAML built without libyaml; the output is identical (spec §3.1)
        return yaml, yaml.SafeDumper, yaml.SafeLoader

# A file MLflow creates with open(path, "w") under umask 022 is 0644; os.open applies the umask.
FILE_MODE = 0o666
# _make_persisted_run_info_dict hard-codes SourceType.LOCAL; the real source is a tag.
SOURCE_TYPE_LOCAL = 4
# FileStore._read_yaml retries an empty read twice (0.1 s, then 0.2 s): MLflow's own writers
# truncate and rewrite meta.yaml in place, so a concurrent reader can see it empty.
_EMPTY_YAML_RETRY_DELAYS = (0.1, 0.2)
# How a store file is opened to be read (meta.yaml, a param or tag file, a metric file). O_NONBLOCK:
# a FIFO planted there opens at once, where open() waited for a writer for ever, and with it the
# daemon's one writer thread; the fstat after the open refuses it. No O_NOFOLLOW: a file kept as a
# link (DVC's symlink cache, git-annex, `cp -rs`, stow) is read through it, as MLflow's open() reads
# it; only what the link leads to must be a regular file. (The writer never writes through a link:
# a meta.yaml it rewrites replaces the link with a file, and an append refuses one, _confinement.)
# O_NOCTTY: a terminal planted there never becomes the daemon's controlling terminal.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# An open of a socket (ENXIO), which is no file to read.
_NOT_OPENED_AS_FILE_ERRNOS = frozenset({errno.ENXIO})
# How long the kernel gives a lease's holder to let go (/proc/sys/fs/lease-break-time, in seconds;
# its default where that cannot be read), and the longest pause between two opens meanwhile.
_LEASE_BREAK_TIME_PATH = "/proc/sys/fs/lease-break-time"
_DEFAULT_LEASE_BREAK_TIME = 45.0
_LEASE_RETRY_MAX_DELAY = 0.05


@functools.cache
def orjson_dumps() -> Callable[[Any], bytes]:
    """orjson's dumps, imported on first use: only the daemon formats metric lines and journal
    entries, and the import costs ~20 ms that ``import trackd`` in a training process should not pay."""
    import orjson

    return orjson.dumps


def orjson_line(value: Any) -> bytes:
    """``value`` as one JSON line, its newline added by orjson (a journal entry: ``+ b"\\n"`` copied
    the line, ~14 MB at a write's 65,536 new files). Imported on first use, as orjson_dumps."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)


# --- text files ---------------------------------------------------------------------------------


def decode_text(data: bytes, path: str) -> str:
    """UTF-8 text of a store file (MLflow reads every file with codecs.open(..., "utf-8"))."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStoreFile(
            f"File {path!r} is not valid UTF-8: found byte {data[exc.start:exc.start + 1]!r} at "
            f"offset {exc.start}, expected UTF-8 text as MLflow writes it."
        ) from None


def read_text(path: str) -> str:
    """A param or tag file: raw UTF-8, no trailing newline."""
    return decode_text(read_regular(path), path)


def read_regular(path: str) -> bytes:
    """The content of the regular file at ``path`` (through a link, as MLflow reads it); StoreError
    naming it if it is (or its link leads to) a FIFO, device or socket."""
    try:
        fd = open_nonblocking(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno not in _NOT_OPENED_AS_FILE_ERRNOS:
            raise
        mode = os.stat(path).st_mode
        raise StoreError(not_regular_message(path, mode, reading=True)) from None
    with open(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise StoreError(not_regular_message(path, mode, reading=True))
        return file.read()


def open_nonblocking(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    """``os.open(path, flags, mode, dir_fd=dir_fd)``, ``flags`` holding O_NONBLOCK, waiting out a
    kernel lease on the file as an open without O_NONBLOCK (MLflow's open()) waits for it.

    O_NONBLOCK keeps a FIFO planted in the store from blocking the daemon's one writer thread, but
    it also makes the open of a file under a lease (a Samba oplock, an NFS delegation knfsd gives
    out) fail with EAGAIN instead of waiting for its holder to let go: a run's end was refused for
    good, the run left RUNNING. That open told the holder already (it starts the lease's break),
    so the open is tried again, still O_NONBLOCK (a FIFO swapped in meanwhile never blocks),
    until the holder lets go or the kernel takes the lease back (lease-break-time, 45 s by
    default). Only a regular file holds a lease: EAGAIN of anything else is raised at once.
    """
    deadline = None
    delay = 0.001
    while True:
        try:
            return os.open(path, flags, mode, dir_fd=dir_fd)
        except BlockingIOError:
            now = time.monotonic()
            if deadline is None:
                deadline = now + _lease_break_time() + 1.0
            if now >= deadline or not _is_regular(path, dir_fd, follow=not flags & os.O_NOFOLLOW):
                raise
            time.sleep(delay)
            delay = min(delay * 2, _LEASE_RETRY_MAX_DELAY)


def _lease_break_time() -> float:
    try:
        with open(_LEASE_BREAK_TIME_PATH, "rb") as file:
            return float(file.read())
    except (OSError, ValueError):
        return _DEFAULT_LEASE_BREAK_TIME


def _is_regular(path: str, dir_fd: int | None, *, follow: bool) -> bool:
    try:
        return stat.S_ISREG(os.stat(path, dir_fd=dir_fd, follow_symlinks=follow).st_mode)
    except OSError:
        return False


def not_regular_message(path: str, mode: int, *, reading: bool = False) -> str:
    """Why the store refuses to write (or, ``reading``, read) ``path``, found of file type ``mode``."""
    kind = (
        "a symbolic link" if stat.S_ISLNK(mode)
        else "a FIFO" if stat.S_ISFIFO(mode)
        else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    if reading:
        return (
            f"Refusing to read {path!r}: it is {kind}, expected a regular file; trackd never reads "
            "from special files planted inside a store."
        )
    return (
        f"Refusing to write {path!r}: it is {kind}, expected a regular file; trackd never "
        "writes through links or into special files planted inside a store."
    )


def write_file_atomic(path: str, data: bytes, temp_dir: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: a temp file in ``temp_dir`` (same filesystem), then os.replace.

    ``temp_dir`` must not be params/, tags/ or metrics/: MLflow reads every file there as a key.
    ``mode``: the file's permission bits, exactly (as shutil.copymode sets them, whatever the
    umask); None: FILE_MODE less the umask.
    """
    temp = write_temp_file(data, temp_dir, mode=mode)
    try:
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise


def write_temp_file(data: bytes, temp_dir: str, temp: str | None = None, *, mode: int | None = None) -> str:
    """A new temp file in ``temp_dir`` holding ``data``, and its path: the caller puts it in place.

    ``temp``: the path to use (from ``temp_file_path(temp_dir)``), when it was recorded before
    (the write journal names a new metric file's temp before the file is written). ``mode``: see
    write_file_atomic.
    """
    temp = temp or temp_file_path(temp_dir)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(temp)
        raise
    return temp


def copy_file_atomic(source: str, path: str, temp_dir: str, mode: int | None = None) -> None:
    """Replace ``path`` with a copy of ``source``, through a temp file in ``temp_dir``; ``mode``:
    see write_file_atomic."""
    import shutil  # here: client processes import this module, and only the daemon copies files (~0.8 MB)

    temp = temp_file_path(temp_dir)
    try:
        shutil.copyfile(source, temp)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --- meta.yaml ----------------------------------------------------------------------------------


def dump_yaml(data: Mapping[str, Any]) -> bytes:
    """YAML exactly as MLflow's utils/yaml_utils.py:write_yaml produces it."""
    yaml, dumper, _ = _yaml()
    text: str = yaml.dump(
        dict(data), default_flow_style=False, allow_unicode=True, sort_keys=True, Dumper=dumper
    )
    return text.encode("utf-8")


def load_yaml(path: str, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """A meta.yaml as a dict; empty is retried as MLflow does, then CorruptStoreFile; StoreError if
    it is not a regular file (a FIFO planted there blocked the daemon's writer thread for ever)."""
    for delay in (*_EMPTY_YAML_RETRY_DELAYS, None):
        data = read_regular(path)
        if data.strip() or delay is None:
            break
        sleep(delay)
    simple = _load_flat_yaml(data)
    if simple is not None:
        return simple
    yaml, _, loader = _yaml()
    try:
        loaded = yaml.load(data, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise CorruptStoreFile(f"File {path!r}{line} is not valid YAML: {exc}.") from None
    if not isinstance(loaded, dict):
        raise CorruptStoreFile(
            f"File {path!r} holds {type(loaded).__name__} {loaded!r:.60}, expected a YAML mapping."
        )
    return loaded


# A line of a flat meta.yaml as yaml.safe_dump writes it, and the scalars read without PyYAML:
# an int, null, [], a single-quoted string on one line, or a plain string that starts with a
# letter or "/" and holds no character YAML gives a meaning (every other plain scalar, "1e3",
# ".inf", "2024-01-01", may resolve to another type). YAML 1.1 reads these words as booleans or null.
_FLAT_LINE = re.compile(r"([a-z_]+): (.*)")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_PLAIN_STRING = re.compile(r"[A-Za-z/][A-Za-z0-9_./:@%+-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# A run id (uuid4().hex) starts with a digit 10 times in 16. Lowercase hex with a letter in it is
# a string to YAML 1.1 unless it is a binary int ("0b101"): PyYAML's float needs a ".", its
# timestamp a "-" and its sexagesimal a ":", so "1e3" and "00025e8a..." stay strings.
_HEX_STRING = re.compile(r"[0-9a-f]*[a-f][0-9a-f]*")
_BINARY_INT = re.compile(r"0b[01]+")


def _load_flat_yaml(data: bytes) -> dict[str, Any] | None:
    """``data`` read without PyYAML if it is a flat mapping of simple scalars, else None.

    Importing PyYAML was ~11 ms of a short process that reads one meta.yaml (set_experiment,
    start_run with a run id); every meta.yaml MLflow and trackd write is such a mapping unless a
    value needs quoting, escaping or folding, and those fall back to PyYAML.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\n"):
        return None
    result: dict[str, Any] = {}
    for line in text[:-1].split("\n"):
        # Not printable: a tab, and \r, \x85, \u2028, which YAML also takes for line breaks.
        match = _FLAT_LINE.fullmatch(line) if line.isprintable() else None
        if match is None or match.group(1) in result or match.group(1) in _YAML_WORDS:
            return None  # (a key "yes" or "null" is a boolean or None to YAML)
        key, raw = match.groups()
        value: Any
        if raw == "null":
            value = None
        elif raw == "[]":
            value = []
        elif _INT.fullmatch(raw):
            value = int(raw)
        elif len(raw) >= 2 and raw[0] == raw[-1] == "'" and "'" not in raw[1:-1].replace("''", ""):
            value = raw[1:-1].replace("''", "'")
        elif _PLAIN_STRING.fullmatch(raw) and raw.lower() not in _YAML_WORDS and not raw.endswith(":"):
            value = raw
        elif _HEX_STRING.fullmatch(raw) and not _BINARY_INT.fullmatch(raw):
            value = raw
        else:
            return None
        result[key] = value
    return result


def experiment_to_meta(experiment: Experiment) -> dict[str, Any]:
    """An experiment's meta.yaml fields, as MLflow 3.17.2 writes them (tags live in tags/)."""
    return {
        "artifact_location": experiment.artifact_location,
        "creation_time": experiment.creation_time,
        "effective_trace_archival_retention": None,
        "experiment_id": experiment.experiment_id,
        "last_update_time": experiment.last_update_time,
        "lifecycle_stage": experiment.lifecycle_stage,
        "name": experiment.name,
        "trace_location": None,
        "workspace": "default",
    }


def experiment_from_meta(meta: Mapping[str, Any], tags: dict[str, str], path: str) -> Experiment:
    """An Experiment from meta.yaml; an int experiment_id (MLflow 1.x) is read as its str."""
    return Experiment(
        experiment_id=str(_required(meta, "experiment_id", path)),
        name=str(_required(meta, "name", path)),
        artifact_location=str(_required(meta, "artifact_location", path)),
        lifecycle_stage=str(meta.get("lifecycle_stage", LIFECYCLE_ACTIVE)),
        creation_time=meta.get("creation_time"),
        last_update_time=meta.get("last_update_time"),
        tags=tags,
    )


def run_info_to_meta(info: RunInfo) -> dict[str, Any]:
    """A run's meta.yaml: every field MLflow 3 writes, plus ``run_uuid``, which MLflow <= 2.22 requires."""
    return {
        "artifact_uri": info.artifact_uri,
        "end_time": info.end_time,
        "entry_point_name": "",
        "experiment_id": info.experiment_id,
        "lifecycle_stage": info.lifecycle_stage,
        "run_id": info.run_id,
        "run_name": info.run_name,
        "run_uuid": info.run_id,
        "source_name": "",
        "source_type": SOURCE_TYPE_LOCAL,
        "source_version": "",
        "start_time": info.start_time,
        "status": int(RunStatus[info.status]),
        "tags": [],
        "user_id": info.user_id,
    }


def run_info_from_meta(meta: Mapping[str, Any], path: str) -> RunInfo:
    """A RunInfo from meta.yaml, tolerant where _read_persisted_run_info_dict is.

    A missing status means RUNNING and a missing lifecycle_stage means active; an int experiment_id
    is read as its str; a missing run_name is left "" for the caller to take from mlflow.runName.
    """
    run_id = meta.get("run_id", meta.get("run_uuid"))
    if run_id is None:
        raise CorruptStoreFile(f"Run meta {path!r} has no 'run_id' key, expected the run's id.")
    if "end_time" not in meta:
        raise CorruptStoreFile(f"Run meta {path!r} has no 'end_time' key, expected an int or null.")
    status = meta.get("status", int(RunStatus.RUNNING))
    if type(status) is not int or status not in RunStatus._value2member_map_:
        raise CorruptStoreFile(
            f"Run meta {path!r} has status {status!r}, expected an int from 1 to 5 "
            f"(RUNNING=1, SCHEDULED=2, FINISHED=3, FAILED=4, KILLED=5)."
        )
    return RunInfo(
        run_id=str(run_id),
        experiment_id=str(_required(meta, "experiment_id", path)),
        run_name=str(meta.get("run_name") or ""),
        user_id=str(meta.get("user_id") or ""),
        status=RunStatus(status).name,
        start_time=_required_time(meta, "start_time", path),
        end_time=meta["end_time"],
        artifact_uri=str(meta.get("artifact_uri") or ""),
        lifecycle_stage=str(meta.get("lifecycle_stage", LIFECYCLE_ACTIVE)),
    )


def _required(meta: Mapping[str, Any], key: str, path: str) -> Any:
    if meta.get(key) is None:
        raise CorruptStoreFile(f"Meta file {path!r} has no {key!r} key, expected one.")
    return meta[key]


def _required_time(meta: Mapping[str, Any], key: str, path: str) -> int | float:
    """A run's start_time as stored, an int or a float. MLflow's reader takes meta.yaml's value as
    it is, and its own ``create_run(start_time=time.time() * 1000)`` leaves a run whose start_time
    is a float (``1795853478917.749``; the call raises after writing meta.yaml): refused, that run
    made every search_runs of its experiment fail. Anything else (a str, a bool) MLflow cannot
    sort its runs by either."""
    value = _required(meta, key, path)
    if type(value) is not int and type(value) is not float:
        raise CorruptStoreFile(f"Meta file {path!r} has {key}: {value!r}, expected a number of milliseconds.")
    return value


def write_key_file(path: str, value: str, temp_dir: str) -> None:
    """A param or tag file: raw UTF-8, no trailing newline, replaced atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file_atomic(path, value.encode("utf-8"), temp_dir)


def file_signature(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells a rewritten meta.yaml from the one read before: os.replace gives a new inode, and
    MLflow's in-place rewrites change mtime and usually size."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
