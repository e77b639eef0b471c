"""Artifact records: what ``log_artifact``, ``log_artifacts``, ``log_text`` and ``log_dict`` send.

Files up to ``MAX_INLINE_ARTIFACT_SIZE`` travel with the event (read when the call is made, so the
file may change as soon as it returns); larger ones travel as a path the daemon copies from: of a
copy made at the call (``_snapshot``, the default, so they too may change at once), or of the file
itself (TRACKD_ARTIFACT_SNAPSHOT=0, or a copy that could not be made). Every name, and every file's
absolute path (any file may go by path), is checked before the first record is made, so a bad name
in a directory logs none of it.
"""

from __future__ import annotations

import itertools
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactNotFound, InvalidArgument
from ..protocol import ARTIFACT, ARTIFACT_FILE, ARTIFACT_FOLDER, ARTIFACT_PERMISSIONS, MAX_INLINE_ARTIFACT_SIZE, MAX_NAME_LENGTH
from ..store import require_utf8, validate_artifact_path

if TYPE_CHECKING:
    from ._snapshot import Snapshots

# (ARTIFACT, run_id, path, content, source_path, source_stamp, mode): see protocol RECORD_FIELDS.
ArtifactRecord = tuple[int, str, str, bytes | None, str | None, tuple[int, int] | None, int | None]


def file_records(
    run_id: str, local_path: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None,
    snapshots: Snapshots | None = None,
) -> Iterator[ArtifactRecord]:
    """The records that copy a file, or a directory as a subdirectory, under ``artifact_path``.

    A file over the inline limit is copied by ``snapshots`` as its record is made, if given, and
    its record names the copy; else it names the file.
    """
    source = Path(local_path)
    if source.is_dir():
        return tree_records(run_id, source, _join(artifact_path, source.name), snapshots)
    if not source.is_file():
        if not source.exists():
            raise ArtifactNotFound(f"Artifact {str(local_path)!r} does not exist.")
        raise InvalidArgument(f"Artifact {str(local_path)!r} is not a file or directory.")
    return _records(run_id, [(source, _check_name(_join(artifact_path, source.name)))], snapshots)


def tree_records(
    run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | os.PathLike[str] | None,
    snapshots: Snapshots | None = None,
) -> Iterator[ArtifactRecord]:
    """The records that copy every file under ``local_dir``, keeping the tree, empty folders included
    (large files through ``snapshots``, as ``file_records``)."""
    root = Path(local_dir)
    if not root.is_dir():
        if not root.exists():
            raise ArtifactNotFound(f"Artifact directory {str(local_dir)!r} does not exist.")
        raise InvalidArgument(f"Artifact directory {str(local_dir)!r} is not a directory.")
    files, empty = _tree(root)
    named = [(path, _check_name(_join(artifact_path, path.relative_to(root).as_posix()))) for path in files]
    if not files and not empty and artifact_path:
        # MLflow's log_artifacts makes artifact_path first (_get_or_create_artifact_dir), so an
        # empty folder logged under one leaves that folder.
        folders = [_check_name(_join(artifact_path, "").rstrip("/"))]
    else:
        folders = [_check_name(_join(artifact_path, path.relative_to(root).as_posix())) for path in empty]
    records = _records(run_id, named, snapshots)
    return itertools.chain(records, ((ARTIFACT, run_id, name, None, None, None, ARTIFACT_FOLDER) for name in folders))


def _tree(root: Path) -> tuple[list[Path], list[Path]]:
    """The files under ``root`` (sorted), and the folders no file or other folder lies under (sorted).

    As MLflow walks it (shutil_copytree_without_file_permissions: os.walk, which does not enter a
    link to a folder): every folder of the tree is made, so an empty one is sent as a folder of
    its own (one that holds a file or a folder is made for it); a link to a folder is made as an
    empty folder, as MLflow's os.mkdir makes it. A file is a regular file, or a link to one.
    """
    files: list[Path] = []
    empty: list[Path] = []
    for folder, subfolders, names in os.walk(root):
        here = [path for path in (Path(folder, name) for name in names) if path.is_file()]
        files.extend(here)
        empty.extend(Path(folder, name) for name in subfolders if os.path.islink(os.path.join(folder, name)))
        if not subfolders and not here and Path(folder) != root:
            empty.append(Path(folder))
    return sorted(files), sorted(empty)


def artifact_file_name(artifact_file: str | os.PathLike[str]) -> str:
    """``log_text``/``log_dict``'s ``artifact_file`` as MLflow takes it: a str or path, normalized.

    MLflow's _log_artifact_helper runs posixpath.normpath on it first, so "./report.txt",
    "plots//loss.txt" and a Path all log (as "report.txt", "plots/loss.txt"); trackd refused the
    first two and raised AttributeError from log_dict for a Path. What is still not a relative
    name after normalizing ("../x.txt", "/etc/x") is refused, as MLflow refuses it.
    """
    if isinstance(artifact_file, os.PathLike):
        artifact_file = os.fspath(artifact_file)
    if type(artifact_file) is not str or not artifact_file:
        raise InvalidArgument(f"Invalid artifact file {artifact_file!r}: expected a non-empty str or path.")
    return _check_name(posixpath.normpath(artifact_file))


def content_record(run_id: str, artifact_file: str, content: bytes) -> ArtifactRecord:
    """The record that writes ``content`` (from ``log_text`` or ``log_dict``, at most
    MAX_INLINE_ARTIFACT_SIZE bytes: larger goes by path, ``_media.submit_content``) as
    ``artifact_file`` (normalized by ``artifact_file_name``)."""
    # mode None: the store's default, as MLflow writes log_text's file (a new file, then copy2).
    return (ARTIFACT, run_id, artifact_file, content, None, None, None)


def dict_content(dictionary: Any, artifact_file: str) -> bytes:
    """A dict as ``log_dict`` writes it: YAML for ``.yaml``/``.yml``, else JSON indented as MLflow does.

    NumPy scalars and arrays are written as the numbers, bools, strings and lists they hold (see
    ``_plain``). Any other value JSON cannot hold is written as its str, as MLflow does; one YAML
    cannot hold safely raises InvalidArgument naming its key and type.
    """
    # Imported here: a training process that never logs a dict should not load them.
    if artifact_file.endswith((".yaml", ".yml")):
        import yaml

        representers = yaml.SafeDumper.yaml_representers  # by exact type, as safe_dump looks them up
        plain = _plain(dictionary, (), _Format(artifact_file, "YAML", lambda value: type(value) in representers), set())
        return yaml.safe_dump(plain, default_flow_style=False).encode("utf-8")
    import json

    # MLflow's log_dict writes what JSON cannot hold as its str (json.dump(..., default=str)): a
    # training config's Path, dtype or Decimal; json.dumps raised TypeError for them here.
    plain = _plain(dictionary, (), _Format(artifact_file, "JSON", None), set())
    return json.dumps(plain, indent=2, default=str).encode("utf-8")


class _Format:
    """The file ``log_dict`` writes, and which values it holds (``holds`` None: all, JSON writing
    the ones it cannot hold as their str)."""

    __slots__ = ("artifact_file", "holds", "name")

    def __init__(self, artifact_file: str, name: str, holds: Callable[[object], bool] | None) -> None:
        self.artifact_file, self.name, self.holds = artifact_file, name, holds

    def refuse(self, path: tuple[object, ...], problem: str) -> InvalidArgument:
        where = "".join(f"[{key!r}]" for key in path) or "the top level"
        return InvalidArgument(f"Cannot write {self.artifact_file!r}: {problem.format(where=where)}")

    def refuse_type(self, what: str, path: tuple[object, ...], value: object) -> InvalidArgument:
        cls = type(value)
        kind = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        expected = (
            "a str, number, bool or None." if what == "key" else "a str, number, bool, None, list or dict (convert "
            "it, or log a .json file, which writes such a value as its str, as MLflow does)."
        )
        return self.refuse(path, f"the {what} at {{where}} is a {kind}, which {self.name} cannot hold; expected {expected}")


def _plain(value: Any, path: tuple[object, ...], fmt: _Format, containing: set[int]) -> Any:
    """``value`` with NumPy values made plain, mappings made dicts and tuples lists, checked for ``fmt``.

    MLflow's log_dict writes np.float32(1.5) to JSON as the string "1.5" and an array as its str
    ("[1 2]"; "[   0    1    2 ... 1997 1998 1999]" for 2,000 values, the rest lost), and to YAML as !!python/object
    tags that yaml.safe_load refuses; trackd raised RepresenterError naming neither key nor type.
    Here they are 1.5 and [1, 2] in both.
    """
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = _from_numpy(value)
    if not isinstance(value, (Mapping, list, tuple)):
        if fmt.holds is not None and not fmt.holds(value):
            raise fmt.refuse_type("value", path, value)
        return value
    if id(value) in containing:
        raise fmt.refuse(path, "the value at {where} contains itself.")
    containing.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {_key(key, path, fmt): _plain(item, (*path, key), fmt, containing) for key, item in value.items()}
        return [_plain(item, (*path, index), fmt, containing) for index, item in enumerate(value)]
    finally:
        containing.discard(id(value))


def _key(key: Any, path: tuple[object, ...], fmt: _Format) -> Any:
    if type(key).__module__ == "numpy" and hasattr(key, "tolist"):
        key = _from_numpy(key)
    # The keys json.dumps takes (it raises TypeError for any other); YAML's must be ones it holds too.
    if not isinstance(key, (str, int, float, bool, type(None))) or (fmt.holds is not None and not fmt.holds(key)):
        raise fmt.refuse_type("key", (*path, key), key)
    return key


def _from_numpy(value: Any) -> Any:
    """A NumPy scalar or array as the Python values it holds (``tolist()``: numbers, bools, str, nested lists).

    float16 and float32 values are taken as NumPy prints them: tolist() widens np.float32(0.1)
    to the double 0.10000000149011612, which a config file should not show for a learning rate.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
        return _floats(value.astype(str).tolist())
    return value.tolist()


def _floats(text: Any) -> Any:
    return [_floats(item) for item in text] if isinstance(text, list) else float(text)


def _records(run_id: str, files: list[tuple[Path, str]], snapshots: Snapshots | None) -> Iterator[ArtifactRecord]:
    # Every source path is checked up front, the small files' too: any file may go by path (one
    # that grows past the inline limit after it is sized), and a long path found then raised
    # partway through a folder, which was left part logged. Contents are read one file at a time,
    # as the records are buffered, so a directory is never all in memory at once.
    # A large file's size and mtime when logged go with its path (source_stamp): the daemon
    # copies it later, and refuses a file changed since rather than store the later content (the
    # snapshot's, made at the call, or the file's own when it goes by its path).
    # Its mode goes with it too (whichever way it travels): MLflow's shutil.copy2 keeps a file's
    # permission bits, and trackd wrote every artifact 0644, a logged script no longer executable.
    infos = [source.stat() for source, _ in files]
    stamps = [(info.st_size, info.st_mtime_ns) for info in infos]
    modes = [_file_mode(info) for info in infos]
    for source, _ in files:
        _check_source_path(source)
    return _read(run_id, files, stamps, modes, snapshots)


def _file_mode(info: os.stat_result) -> int:
    return ARTIFACT_FILE | (info.st_mode & ARTIFACT_PERMISSIONS)


def _read(
    run_id: str, files: list[tuple[Path, str]], stamps: list[tuple[int, int]], modes: list[int], snapshots: Snapshots | None
) -> Iterator[ArtifactRecord]:
    for (source, name), stamp, mode in zip(files, stamps, modes):
        if stamp[0] <= MAX_INLINE_ARTIFACT_SIZE:
            # At most one byte past the limit: a file that grew by gigabytes since it was sized
            # (a log a training thread appends to) was read whole, only to be sent by path.
            with source.open("rb") as file:
                content = file.read(MAX_INLINE_ARTIFACT_SIZE + 1)
            if len(content) <= MAX_INLINE_ARTIFACT_SIZE:
                yield (ARTIFACT, run_id, name, content, None, None, mode)
                continue
            # It grew past the inline limit since it was sized: inline, the daemon refused the
            # whole batch as malformed, and the client resent it for ever. By path, as any large
            # file, stamped now.
            del content
            info = source.stat()
            stamp, mode = (info.st_size, info.st_mtime_ns), _file_mode(info)
        # Copied now, as MLflow's log_artifact copies before it returns: the daemon copies the
        # file later, and a model saved in a TemporaryDirectory, or a last.ckpt rewritten each
        # epoch, was gone or changed by then (see _snapshot).
        taken = snapshots.take(source, name) if snapshots is not None else None
        if taken is not None:
            copy_path, copy_stamp, info = taken
            yield (ARTIFACT, run_id, name, None, copy_path, copy_stamp, _file_mode(info))
        else:
            yield (ARTIFACT, run_id, name, None, str(source.absolute()), stamp, mode)


def _check_source_path(source: Path) -> None:
    source_path = str(source.absolute())
    # MLflow copies the file by its path and takes any name; the path travels to the daemon as
    # UTF-8 text, which a folder name that is not UTF-8 cannot be.
    require_utf8(source_path, f"path of artifact file {source_path!r} (a file over {MAX_INLINE_ARTIFACT_SIZE} bytes is copied by it)")
    if len(source_path) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"Artifact {str(source)!r} has a path of {len(source_path)} characters; at most {MAX_NAME_LENGTH} are "
            f"allowed, as the daemon copies a file larger than {MAX_INLINE_ARTIFACT_SIZE} bytes (or one that grows "
            "past that before it is read) from its path."
        )


def _check_name(path: str) -> str:
    """MLflow's artifact path rules, and the protocol's length limit (a longer one loses the frame)."""
    path = validate_artifact_path(path)
    if len(path) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"Artifact path {path[:40]!r}... has {len(path)} characters; at most {MAX_NAME_LENGTH} are allowed.")
    return path


def _join(prefix: str | os.PathLike[str] | None, name: str) -> str:
    # A leading "/" is kept, for _check_name to refuse as log_text does (it was stripped:
    # artifact_path="/etc" logged under etc/ without a word). A Path is taken as its str, as
    # MLflow's path_not_unique does (str(name)): Lightning's MLFlowLogger logs each checkpoint
    # with artifact_path=Path(prefix) / Path(checkpoint).stem.
    if isinstance(prefix, os.PathLike):
        prefix = os.fspath(prefix)
    if prefix is not None and type(prefix) is not str:
        raise InvalidArgument(f"Invalid artifact path {prefix!r}: expected a str or a path, got {type(prefix).__name__}.")
    if not prefix:
        return name
    normalized = posixpath.normpath(prefix)
    if normalized != prefix and normalized != "." and not normalized.startswith(("..", "/")):
        # MLflow's local artifact repository refuses an artifact_path that normalizes to another
        # name ("z/", "z//", "./z", "a/../z"), in these words (verify_artifact_path); trackd logged
        # "z/" under z/, so code that ran here raised once pointed at MLflow. What normalizes to
        # no relative name ("/z", "..") is refused by _check_name, whose words say why.
        raise InvalidArgument(
            f"Invalid artifact path: '{prefix}'. Names may be treated as files in certain cases, and must not resolve "
            f"to other names when treated as such. This name would resolve to {normalized!r}"
        )
    return f"{prefix.rstrip('/')}/{name}"
