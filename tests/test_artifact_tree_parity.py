"""``log_artifacts`` and ``log_artifact`` leave the artifact tree MLflow's own copy leaves: empty
folders made, and each file's permission bits kept (MLflow's LocalArtifactRepository: os.walk and
os.mkdir for every folder, shutil.copy2 for every file).

A real daemon writes one store through trackd; real MLflow logs the same source tree into a
second store; the two runs' artifact folders are compared, names, kinds and file modes.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import DaemonProcess, RawClient, create_run_record

from trackd import Client, ClientConfig
from trackd.protocol import (
    MAX_INLINE_ARTIFACT_SIZE, Ack, BadBatch, Batch, ConnectionClosed, ErrorCode, ErrorReply, Event, RecordKind, Rejected, Welcome,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _source_tree(root: Path) -> Path:
    """A folder as a training job leaves one: empty folders (one nested in another), an
    executable script, a private file, a large executable (sent by path), and a link to a folder."""
    source = root / "src"
    (source / "logs" / "empty").mkdir(parents=True)
    (source / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (source / "bin").mkdir()
    script = source / "bin" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    secret = source / "token.txt"
    secret.write_text("s3cr3t")
    secret.chmod(0o600)
    big = source / "bin" / "tool"
    big.write_bytes(b"\x7fELF" + bytes(MAX_INLINE_ARTIFACT_SIZE))  # over the inline limit: copied by the daemon
    big.chmod(0o750)
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "inside.txt").write_text("not followed by MLflow's os.walk")
    (source / "linked").symlink_to(root / "elsewhere")
    (root / "empty-dir").mkdir()
    return source


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: "dir", or a file's permission bits in octal."""
    entries = {}
    for path in folder.rglob("*"):
        info = path.lstat()
        entries[path.relative_to(folder).as_posix()] = "dir" if stat.S_ISDIR(info.st_mode) else oct(stat.S_IMODE(info.st_mode))
    return entries


def _mlflow_tree(root: Path, source: Path) -> dict[str, str]:
    """The artifact folder MLflow itself makes of ``source`` (logged as trackd logs it below)."""
    client = MlflowClient(str(root / "mlflow-store"))
    run_id = client.create_run("0").info.run_id
    client.log_artifacts(run_id, str(source), "tree")
    client.log_artifacts(run_id, str(root / "empty-dir"), "nothing")
    client.log_artifact(run_id, str(root / "empty-dir"), "single")
    client.log_artifact(run_id, str(source / "bin" / "run.sh"))
    return _tree(root / "mlflow-store" / "0" / run_id / "artifacts")


def test_log_artifacts_keeps_empty_folders_and_file_modes_as_mlflow(tmp_path: Path, store: Path, daemon: DaemonProcess) -> None:
    # This used to drop every empty folder (logs/empty, nested/deeper/deepest, the link, the
    # empty artifact_path folders) and write every file 0644: run.sh lost its executable bit,
    # token.txt became readable by all.
    source = _source_tree(tmp_path)
    expected = _mlflow_tree(tmp_path, source)
    assert expected["tree/logs/empty"] == "dir" and expected["tree/bin/run.sh"] == "0o755"  # what MLflow does
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run("0").info.run_id
        client.log_artifacts(run_id, source, "tree")
        client.log_artifacts(run_id, tmp_path / "empty-dir", "nothing")
        client.log_artifact(run_id, tmp_path / "empty-dir", "single")
        client.log_artifact(run_id, source / "bin" / "run.sh")
        client.flush()
    assert _tree(store / "0" / run_id / "artifacts") == expected
    # And MLflow lists the empty folders as folders.
    listed = {(info.path, info.is_dir) for info in MlflowClient(str(store)).list_artifacts(run_id, "tree/logs")}
    assert listed == {("tree/logs/empty", True)}


def test_log_text_is_written_with_the_default_mode(store: Path, daemon: DaemonProcess) -> None:
    # MLflow writes log_text's file anew, then copies it: the default mode, less the umask.
    umask = os.umask(0)
    os.umask(umask)
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run("0").info.run_id
        client.log_text(run_id, "hello", "notes/a.txt")
        client.flush()
    mode = stat.S_IMODE(os.stat(store / "0" / run_id / "artifacts" / "notes" / "a.txt").st_mode)
    assert mode == 0o666 & ~umask


# -- the wire: the record's mode field ------------------------------------------------------------

ARTIFACT = RecordKind.ARTIFACT.value


def _send(daemon: DaemonProcess, store: Path, run_id: str, *records: list[Any]) -> list[Event]:
    """A Batch frame of ``records`` (raw msgpack, so anything can be sent) after the run's creation:
    the replies up to the batch's Ack, or to the daemon's close."""
    client = RawClient(daemon.paths.socket)
    try:
        assert isinstance(client.hello(str(store), client_id=uuid.uuid4().hex), Welcome)
        client.send(Batch(seq=1, records=[create_run_record(run_id)]))
        assert client.next_event() == Ack(seq=1)
        body = msgpack.packb([3, 2, list(records)], use_bin_type=True)
        client.send_bytes(len(body).to_bytes(4, "big") + body)
        events = []
        while not isinstance(event := client.next_event(), (ConnectionClosed, Ack)):
            events.append(event)
        return events + ([event] if isinstance(event, Ack) else [])
    finally:
        client.close()


@pytest.mark.parametrize(
    ("mode", "content", "source", "words"),
    [
        pytest.param("755", b"x", None, "field 'mode' must be nil", id="string"),
        pytest.param(True, b"x", None, "field 'mode' must be nil", id="bool"),
        pytest.param(-1, b"x", None, "field 'mode' must be nil", id="negative"),
        pytest.param(2**64 - 1, b"x", None, "field 'mode' must be nil", id="uint64"),
        pytest.param(0o104755, b"x", None, "field 'mode' must be nil", id="setuid"),
        pytest.param(0o020644, b"x", None, "field 'mode' must be nil", id="character-device"),
        pytest.param(0o040755, None, None, "field 'mode' must be nil", id="folder-with-permissions"),
        pytest.param(0o040000, b"x", None, "of a folder (mode 0o40000) must have nil 'content'", id="folder-with-content"),
        pytest.param(0o040000, None, "/etc/hostname", "of a folder (mode 0o40000) must have nil 'content'", id="folder-with-source"),
        pytest.param(0o100644, None, None, "needs exactly one of 'content'", id="file-without-content"),
    ],
)
def test_a_malformed_artifact_mode_is_refused_with_a_sentence_and_the_daemon_carries_on(
    daemon: DaemonProcess, store: Path, mode: object, content: bytes | None, source: str | None, words: str
) -> None:
    run_id = uuid.uuid4().hex
    *named, reply = _send(daemon, store, run_id, [ARTIFACT, run_id, "a/b", content, source, None, mode])
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_FRAME, reply
    assert words in reply.message, reply.message
    assert named == [BadBatch(seq=2, message=reply.message)]
    assert not (store / "0" / run_id / "artifacts" / "a").exists()
    assert daemon.process is not None and daemon.process.poll() is None
    assert daemon.status()["protocol_errors"] >= 1


def test_records_of_older_clients_without_a_mode_are_still_written(daemon: DaemonProcess, store: Path) -> None:
    # Protocol 3 (no stamp) and 4-5 (no mode) records, as a spool file left before an upgrade holds them.
    run_id = uuid.uuid4().hex
    events = _send(daemon, store, run_id, [ARTIFACT, run_id, "v3.txt", b"3", None], [ARTIFACT, run_id, "v5.txt", b"5", None, None])
    assert events == [Ack(seq=2)]
    artifacts = store / "0" / run_id / "artifacts"
    assert (artifacts / "v3.txt").read_bytes() == b"3" and (artifacts / "v5.txt").read_bytes() == b"5"


def test_a_folder_where_a_file_is_is_rejected_alone(daemon: DaemonProcess, store: Path) -> None:
    # As MLflow's os.mkdir fails there: the item is refused (Rejected), the rest of the batch written.
    run_id = uuid.uuid4().hex
    events = _send(
        daemon, store, run_id, [ARTIFACT, run_id, "x", b"file", None, None, 0o100644], [ARTIFACT, run_id, "x", None, None, None, 0o040000],
        [ARTIFACT, run_id, "y", None, None, None, 0o040000],
    )
    assert len(events) == 2 and isinstance(events[0], Rejected) and events[1] == Ack(seq=2), events
    assert "'x'" in events[0].item, events[0]
    artifacts = store / "0" / run_id / "artifacts"
    assert (artifacts / "x").read_bytes() == b"file" and (artifacts / "y").is_dir()
