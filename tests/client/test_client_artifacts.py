"""``trackd.Client``'s artifacts: exact bytes and whole trees; a small file is read at the call, a large
or growing one is copied by path, and a directory with one name that cannot be logged logs none of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trackd import Client
from trackd.errors import InvalidArgument
from trackd.protocol import MAX_INLINE_ARTIFACT_SIZE
from trackd.store import FileInfo


def _artifact_root(store: Path, run_id: str) -> Path:
    return next(store.glob(f"*/{run_id}")) / "artifacts"


def test_log_text_and_log_dict_write_exact_bytes(client: Client, store: Path) -> None:
    run_id = client.create_run().info.run_id
    data = {"lr": 0.1, "layers": [1, 2], "name": "héllo"}
    client.log_text(run_id, "héllo\n", "notes/readme.txt")
    client.log_dict(run_id, data, "config.json")
    client.log_dict(run_id, data, "config.yaml")
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.json", "config.yaml", "notes"]
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/readme.txt"]
    root = _artifact_root(store, run_id)
    assert (root / "notes" / "readme.txt").read_bytes() == "héllo\n".encode()
    assert (root / "config.json").read_bytes() == json.dumps(data, indent=2).encode()
    import yaml

    assert yaml.safe_load((root / "config.yaml").read_text()) == data


def test_log_artifact_reads_small_files_at_the_call(client: Client, store: Path, tmp_path: Path) -> None:
    # A file up to 8 MiB travels with the event: deleting it right after the call loses nothing.
    run_id = client.create_run().info.run_id
    source = tmp_path / "weights.bin"
    content = os.urandom(MAX_INLINE_ARTIFACT_SIZE)
    source.write_bytes(content)
    client.log_artifact(run_id, source, artifact_path="models")
    source.unlink()
    assert client.list_artifacts(run_id, "models") == [FileInfo("models/weights.bin", False, MAX_INLINE_ARTIFACT_SIZE)]
    assert (_artifact_root(store, run_id) / "models" / "weights.bin").read_bytes() == content


def test_log_artifact_sends_a_file_over_8_mib_by_path(client: Client, store: Path, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    source = tmp_path / "big.bin"
    content = os.urandom(MAX_INLINE_ARTIFACT_SIZE + 1)
    source.write_bytes(content)
    client.log_artifact(run_id, source)
    client.flush()
    assert (_artifact_root(store, run_id) / "big.bin").read_bytes() == content
    assert source.read_bytes() == content  # copied, not moved


def test_log_artifacts_and_a_directory_keep_the_tree(client: Client, store: Path, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    tree = tmp_path / "plots"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    client.log_artifacts(run_id, tree, artifact_path="out")
    client.log_artifact(run_id, tree)
    assert [(a.path, a.is_dir) for a in client.list_artifacts(run_id)] == [("out", True), ("plots", True)]
    root = _artifact_root(store, run_id)
    for prefix in ("out", "plots"):
        assert (root / prefix / "a.txt").read_text() == "a"
        assert (root / prefix / "sub" / "b.txt").read_text() == "b"


@pytest.mark.parametrize("call", ["log_artifacts", "log_artifact"])
def test_a_directory_with_one_unloggable_name_logs_none_of_its_files(
    client: Client, store: Path, tmp_path: Path, call: str
) -> None:
    # The files before the bad one were already buffered when it raised: half a directory landed.
    run_id = client.create_run().info.run_id
    tree = tmp_path / "out"
    deep = tree.joinpath(*["d" * 250] * 5)  # its name in the run has more than 1024 characters
    deep.mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (deep / "z.txt").write_text("z")
    with pytest.raises(InvalidArgument, match="at most 1024"):
        getattr(client, call)(run_id, tree)
    client.flush()
    assert client.list_artifacts(run_id) == []


def test_an_absolute_artifact_path_is_refused_as_log_text_refuses_it(client: Client, tmp_path: Path) -> None:
    run_id = client.create_run().info.run_id
    source = tmp_path / "a.txt"
    source.write_text("a")
    with pytest.raises(InvalidArgument, match="no leading '/'"):
        client.log_artifact(run_id, source, artifact_path="/etc")
    client.log_artifact(run_id, source, artifact_path="plots")  # "plots/" is refused, as MLflow refuses it: test_artifact_path_forms.py
    assert [f.path for f in client.list_artifacts(run_id)] == ["plots"]


def test_a_file_that_grows_past_the_inline_limit_after_it_was_sized_goes_by_path(tmp_path: Path) -> None:
    # log_artifacts sizes a folder's files first and reads them as their records are buffered: a
    # log a training thread appends to grew past 8 MiB in between, went inline, and the daemon
    # refused the whole batch as malformed, which the client resent for ever (second review).
    from trackd.client._artifacts import tree_records
    from trackd.protocol import MAX_INLINE_ARTIFACT_SIZE, check_record

    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "train.log"
    log.write_bytes(b"x" * 1024)
    records = tree_records("0123456789abcdef0123456789abcdef", folder, None)  # sized here
    with open(log, "ab") as grow:
        grow.write(b"y" * MAX_INLINE_ARTIFACT_SIZE)
    (record,) = list(records)  # read here
    check_record(record)
    assert record[3] is None and record[4] == str(log)
    assert record[5] == (log.stat().st_size, log.stat().st_mtime_ns)


def test_a_file_that_grew_by_gigabytes_after_it_was_sized_is_not_read_whole(tmp_path: Path) -> None:
    # Reading it whole (read_bytes) to find it had grown past the inline limit took its size in
    # memory: a log appended to by gigabytes, here a sparse 4 GiB, in a process allowed 1 GiB more.
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "train.log").write_bytes(b"x" * 1024)
    code = f"""
import os, resource, sys
from trackd.client._artifacts import tree_records
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
records = tree_records("0123456789abcdef0123456789abcdef", {str(folder)!r}, None)
os.truncate({str(folder / "train.log")!r}, 4 * 1024 ** 3)
resource.setrlimit(resource.RLIMIT_AS, (size + 1024 ** 3, resource.RLIM_INFINITY))
(record,) = list(records)
print(record[3] is None, record[4], record[5][0])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(folder / "train.log"), str(4 * 1024 ** 3)]


def test_a_folder_with_a_path_too_long_to_copy_by_path_logs_none_of_it(client: Client, store: Path, tmp_path: Path) -> None:
    # Any file may go by path (one that grows past the inline limit after it is sized), and a path
    # too long for that was found only then, raising partway through log_artifacts: the files
    # before it were logged, against "a bad name in a directory logs none of it".
    folder = tmp_path / "outputs"
    # A relative name of 1,009 characters (allowed: at most 1024), so a source path past 1024.
    deep = folder.joinpath(*["d" * 250] * 4)
    deep.mkdir(parents=True)
    assert len(str(deep.relative_to(folder) / "b.log")) == 1009 and len(str((deep / "b.log").absolute())) > 1024
    (folder / "a.txt").write_text("first")
    (deep / "b.log").write_text("small, for now")
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match=r"has a path of \d+ characters; at most 1024 are allowed"):
        client.log_artifacts(run_id, str(folder))
    client.flush()
    assert client.list_artifacts(run_id) == []
