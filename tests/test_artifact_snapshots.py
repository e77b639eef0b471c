"""A file over 8 MiB given to ``log_artifact(s)`` is copied at the call, as MLflow copies it: the
script may delete or rewrite it as soon as the call returns, and the store gets the content it had
then. ``log_text``/``log_dict`` content over 8 MiB lands whole. TRACKD_ARTIFACT_SNAPSHOT=0 keeps
the copy by path after the call, and its check at flush().

Real processes: a real daemon, the scripts as a user ported them from MLflow in child processes,
MLflow reading the store back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, wait_for

from trackd import Client, ClientConfig, DeliveryError

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

MIB = 1024 * 1024

# argv: store. MLflow's usual pattern (log_model): a 20 MiB model saved into a TemporaryDirectory
# and log_artifacts'd; the folder is deleted when the with-block ends. No flush().
TMPDIR_MODEL = """
import os, random, sys, tempfile, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "model.bin"), "wb") as f:
            f.write(random.Random(7).randbytes(20 * 1024 * 1024))
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write("{}")
        trackd.log_artifacts(d, artifact_path="model")
    trackd.log_metric("acc", 0.9)
print(run.info.run_id)
"""

# argv: store. last.ckpt rewritten in place each epoch and logged; no flush().
CHECKPOINTS = """
import sys, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    for epoch in range(5):
        with open("last.ckpt", "wb") as f:
            f.write(bytes([epoch]) * (20 * 1024 * 1024))
        trackd.log_artifact("last.ckpt", artifact_path=f"epoch{epoch}")
print(run.info.run_id)
"""


def _run_script(code: str, tmp_path: Path, store: Path, socket_path: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(tmp_path / "spool"))
    result = subprocess.run([sys.executable, "-c", code, str(store)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1], result


def _artifact(store: Path, run_id: str, path: str) -> bytes:
    """The artifact as MLflow downloads it."""
    return Path(MlflowClient(str(store)).download_artifacts(run_id, path)).read_bytes()


@contextlib.contextmanager
def _paused(daemon: DaemonProcess) -> Iterator[None]:
    """The daemon stopped (SIGSTOP) for the block: it reads and copies nothing meanwhile."""
    daemon.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        daemon.signal(signal.SIGCONT)


def _media_left(spool: Path) -> list[Path]:
    """What waits in media folders: not their owner files (a process that exits by os._exit leaves
    its media folder, empty but for that file, to the next delivery)."""
    return [path for path in spool.glob("*.media/**/*") if path.name != "owner"] if spool.exists() else []


def test_a_model_saved_in_a_temporary_directory_and_deleted_after_log_artifacts_is_stored_whole(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to store only config.json: the daemon copied model.bin by path after the call,
    # from a folder by then deleted; the run still said FINISHED, and one line at exit said so.
    import random

    run_id, result = _run_script(TMPDIR_MODEL, tmp_path, store, daemon.paths.socket)
    assert "trackd:" not in result.stderr, result.stderr
    mlflow_client = MlflowClient(str(store))
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    assert sorted(info.path for info in mlflow_client.list_artifacts(run_id, "model")) == ["model/config.json", "model/model.bin"]
    assert _artifact(store, run_id, "model/model.bin") == random.Random(7).randbytes(20 * MIB)
    assert _artifact(store, run_id, "model/config.json") == b"{}"
    assert _media_left(tmp_path / "spool") == []  # the copy went once the daemon had written it


def test_a_checkpoint_rewritten_in_place_each_epoch_is_stored_as_it_was_at_each_call(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to store 1 of the 5: the others had changed before the daemon copied them, and
    # were refused ("changed after log_artifact and before the daemon copied it") at exit.
    run_id, result = _run_script(CHECKPOINTS, tmp_path, store, daemon.paths.socket)
    assert "trackd:" not in result.stderr, result.stderr
    for epoch in range(5):
        assert _artifact(store, run_id, f"epoch{epoch}/last.ckpt") == bytes([epoch]) * (20 * MIB)
    assert _media_left(tmp_path / "spool") == []


def test_with_artifact_snapshot_off_a_large_file_is_copied_by_path_and_a_deleted_one_reported_at_flush(
    daemon: DaemonProcess, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKD_ARTIFACT_SNAPSHOT", "0")
    monkeypatch.setenv("TRACKD_SOCKET", str(daemon.paths.socket))
    monkeypatch.setenv("TRACKD_AUTOSTART", "0")
    source = tmp_path / "model.bin"
    source.write_bytes(b"m" * (9 * MIB))
    with Client(store, config=ClientConfig.from_env()) as client:
        run_id = client.create_run().info.run_id
        client.flush()
        with _paused(daemon):  # the daemon cannot copy it before it is deleted
            client.log_artifact(run_id, source)
            source.unlink()
        with pytest.raises(DeliveryError) as caught:
            client.flush()
    (failure,) = caught.value.failures
    assert f"{str(source)!r} cannot be read (No such file or directory)" in failure
    assert MlflowClient(str(store)).list_artifacts(run_id) == []


@pytest.mark.parametrize("words", ["0", "off", "FALSE"])
def test_artifact_snapshot_is_read_from_the_environment_as_autostart_is(monkeypatch: pytest.MonkeyPatch, words: str) -> None:
    monkeypatch.setenv("TRACKD_ARTIFACT_SNAPSHOT", words)
    assert ClientConfig.from_env().artifact_snapshot is False
    monkeypatch.setenv("TRACKD_ARTIFACT_SNAPSHOT", "copy")
    with pytest.raises(ValueError, match=r"TRACKD_ARTIFACT_SNAPSHOT='copy' is not valid: expected one of 1, true"):
        ClientConfig.from_env()


@pytest.mark.parametrize("kind", ["log_text", "log_dict"])
def test_log_text_and_log_dict_of_over_8_mib_land_whole(client: Client, store: Path, kind: str) -> None:
    # This used to raise InvalidArgument ("log_text and log_dict take at most 8388608 bytes"):
    # an evaluation script dumping its predictions crashed at its end. MLflow writes any size.
    import json

    run_id = client.create_run().info.run_id
    if kind == "log_text":
        expected = ("é" * (9 * MIB // 2) + "\n").encode()
        client.log_text(run_id, expected.decode(), "eval/big.txt")
    else:
        predictions = {"preds": list(range(1_500_000))}
        expected = json.dumps(predictions, indent=2).encode()
        client.log_dict(run_id, predictions, "eval/big.txt")
    client.flush()
    assert len(expected) > 9 * MIB
    assert _artifact(store, run_id, "eval/big.txt") == expected
    assert client.list_artifacts(run_id, "eval")[0].file_size == len(expected)


# argv: store, go file, parent's file, child's file. The daemon is stopped (SIGSTOP) from
# "ready" on: a parent logs and deletes a large file, forks, and the child does the same with its
# own; both wait for the daemon, which the test resumes once both printed.
FORK = """
import os, sys, time, trackd
store, go, mine, theirs = sys.argv[1:5]
trackd.set_tracking_uri(store)
run = trackd.start_run()
trackd.flush()
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
trackd.log_artifact(mine, "parent")
os.remove(mine)
pid = os.fork()
if pid == 0:
    trackd.log_artifact(theirs, "child")
    os.remove(theirs)
    print("child logged", flush=True)
    trackd.flush()
    os._exit(0)
print("forked", flush=True)
_, status = os.waitpid(pid, 0)
assert status == 0, status
trackd.end_run()
print(run.info.run_id, flush=True)
"""


def test_snapshots_made_before_and_after_a_fork_each_reach_the_store(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # The child removes its own copies once written, never its parent's (whose folder it
    # abandons at the fork), and its parent never removes the child's.
    mine, theirs, go, spool = tmp_path / "parent.bin", tmp_path / "child.bin", tmp_path / "go", tmp_path / "spool"
    mine.write_bytes(b"p" * (9 * MIB))
    theirs.write_bytes(b"c" * (9 * MIB))
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool))
    with Child(FORK, [str(store), str(go), str(mine), str(theirs)], env) as script:
        wait_for(lambda: "ready" in script.out, timeout=30, message="the run to start")
        with _paused(daemon):
            go.touch()
            wait_for(lambda: {"forked", "child logged"} <= set(script.out), timeout=30, message="both processes to log")
        assert script.wait(60) == 0, script.stderr()
    run_id = script.out[-1]
    assert "trackd:" not in script.stderr(), script.stderr()
    assert _artifact(store, run_id, "parent/parent.bin") == b"p" * (9 * MIB)
    assert _artifact(store, run_id, "child/child.bin") == b"c" * (9 * MIB)
    assert _media_left(spool) == []


# argv: store, file. Logged while no daemon answers (spooled at exit), then deleted.
SPOOLED = """
import os, sys, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    trackd.log_artifact(sys.argv[2], "model")
os.remove(sys.argv[2])
print(run.info.run_id, flush=True)
"""


def test_a_spooled_snapshot_waits_beside_the_spool_and_trackd_sync_stores_it_then_removes_it(
    store: Path, tmp_path: Path, socket_path: Path
) -> None:
    source, spool = tmp_path / "model.bin", tmp_path / "spool"
    source.write_bytes(b"s" * (9 * MIB))
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool), TRACKD_CONNECT_TIMEOUT="1", TRACKD_EXIT_TIMEOUT="1")
    result = subprocess.run([sys.executable, "-c", SPOOLED, str(store), str(source)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    assert list(spool.glob("*.spool")) and _media_left(spool), result.stderr  # the copy waits for the spool's delivery
    daemon = DaemonProcess(socket_path).start()
    try:
        sync = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert _artifact(store, run_id, "model/model.bin") == b"s" * (9 * MIB)
        assert not list(spool.glob("*.media")) and not list(spool.glob("*.spool"))
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert not os.path.exists(source)


@contextlib.contextmanager
def _xfs_with_reflinks(folder: Path) -> Iterator[Path]:
    """An XFS filesystem (reflink=1) in a sparse image, loop-mounted on ``folder`` for the block;
    skips the test where mkfs.xfs is missing or mounting is not allowed."""
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs is not installed (xfsprogs)")
    image = folder.with_suffix(".img")
    with open(image, "wb") as file:
        file.truncate(512 * MIB)  # sparse; XFS wants 300 MB at least
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, capture_output=True)
    folder.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # Lazily: this process keeps its media folder open (locked) until it exits.
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def _used_bytes(folder: Path) -> int:
    os.sync()
    disk = os.statvfs(folder)
    return (disk.f_blocks - disk.f_bfree) * disk.f_frsize


def test_on_a_filesystem_that_shares_extents_the_copy_at_the_call_is_a_reflink(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # FICLONE: the copy takes no room and no time whatever the file's size, and still keeps the
    # content it had at the call when the file is rewritten in place (the filesystem unshares).
    with _xfs_with_reflinks(tmp_path / "xfs") as xfs:
        source = xfs / "last.ckpt"
        source.write_bytes(b"1" * (64 * MIB))
        config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, spool_dir=xfs / "spool")
        with Client(store, config=config) as client:
            run_id = client.create_run().info.run_id
            client.flush()
            with _paused(daemon):  # the daemon's copy waits: only the snapshot exists meanwhile
                before = _used_bytes(xfs)
                client.log_artifact(run_id, source)
                grown = _used_bytes(xfs) - before
                with open(source, "r+b") as rewrite:
                    rewrite.write(b"2" * (64 * MIB))
            client.flush()
        assert grown < 4 * MIB, f"the copy at the call took {grown} bytes of a 64 MiB file: not a reflink"
        assert _artifact(store, run_id, "last.ckpt") == b"1" * (64 * MIB)
        assert _media_left(xfs / "spool") == []
