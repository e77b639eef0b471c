"""``trackd daemon status`` and ``trackd daemon start`` as an operator uses them, in real processes.

Status says what waits in the spool folder (daemon running or not), when each error last happened
and whether a store that refused writes takes them again, and counts the bytes of a write held up
by its disk; start passes the daemon's own flags on, over TRACKD_DAEMON_ARGS.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    Child, DaemonProcess, RawClient, child_env, create_run_record, fill, inherited_env, metric_records, refusal, wait_for,
)

from trackd._paths import DaemonPaths
from trackd.protocol import Ack, Batch, ErrorReply, Welcome

pytestmark = pytest.mark.timeout(120)

# Logs a run of 196 points with no daemon (TRACKD_AUTOSTART=0), so 197 events go to its spool
# file at exit; with argv[1] == "wait" it stays alive until file argv[2] exists, spooling once no
# daemon has answered for TRACKD_CONNECT_TIMEOUT, its spool file locked.
SPOOL_AND_EXIT = """
import os, sys, time, trackd
trackd.start_run()
for step in range(196):
    trackd.log_metric("x", float(step), step=step)
try:
    trackd.flush(timeout=0.5)
except Exception:
    pass
if sys.argv[1] == "wait":
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
"""


def trackd_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trackd.cli", *args], capture_output=True, text=True, timeout=45, env=env)


def spool_of_an_exited_process(socket_path: Path, spool: Path, store: Path) -> Path:
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool), TRACKD_TRACKING_URI=str(store))
    result = subprocess.run([sys.executable, "-c", SPOOL_AND_EXIT, "exit"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (path,) = spool.glob("*.spool")
    return path


def test_status_without_a_daemon_lists_the_spool_files_waiting_and_what_delivers_them(tmp_path: Path, socket_path: Path) -> None:
    # With the daemon down and a 197-event spool present, status said only "not running".
    spool, store = tmp_path / "spool", tmp_path / "mlruns"
    path = spool_of_an_exited_process(socket_path, spool, store)
    env = child_env(
        socket_path, TRACKD_SPOOL_DIR=str(spool), TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_CONNECT_TIMEOUT="0.2",
    )
    with Child(SPOOL_AND_EXIT, ["wait", str(tmp_path / "stop")], env) as running:
        wait_for(lambda: len(list(spool.glob("*.spool"))) == 2, 60, message="the running process to spool")
        text = trackd_cli("daemon", "status", env=env)
        as_json = trackd_cli("daemon", "status", "--json", env=env)
        (tmp_path / "stop").touch()
        assert running.wait(60) == 0, running.stderr()
    assert text.returncode == 1 and "is not running" in text.stderr
    size = path.stat().st_size
    assert re.search(
        rf"spool +1 file \([\d.]+ KiB, last written \d+ s ago\) of exited processes waiting in {re.escape(str(spool))}: "
        r"run `trackd sync`, or the next trackd process to connect delivers them", text.stdout,
    ), text.stdout
    assert re.search(r"spool +1 file \(.*\) being written by running processes", text.stdout), text.stdout
    assert as_json.returncode == 1
    shown = json.loads(as_json.stdout)
    assert shown["running"] is False and shown["spool"]["folder"] == str(spool)
    assert shown["spool"]["waiting"]["files"] == 1 and shown["spool"]["waiting"]["bytes"] == size
    assert shown["spool"]["running"]["files"] == 1 and shown["spool"]["set_aside"]["files"] == 0


def test_status_of_a_running_daemon_lists_the_spool_files_waiting(tmp_path: Path, daemon: DaemonProcess) -> None:
    spool = tmp_path / "spool"
    path = spool_of_an_exited_process(tmp_path / "none.sock", spool, tmp_path / "mlruns")
    aside = path.with_name(path.name.replace(".spool", ".undeliverable.spool"))
    path.rename(aside)
    sock = str(daemon.paths.socket)
    text = trackd_cli("daemon", "status", "--socket", sock, "--spool-dir", str(spool))
    assert text.returncode == 0, text.stderr
    assert re.search(r"spool +1 file \(.*\) set aside as undeliverable .*only `trackd sync` tries them", text.stdout), text.stdout
    shown = json.loads(trackd_cli("daemon", "status", "--socket", sock, "--spool-dir", str(spool), "--json").stdout)
    assert shown["pid"] == daemon.pid
    assert shown["spool"]["set_aside"]["files"] == 1 and shown["spool"]["waiting"]["files"] == 0
    empty = trackd_cli("daemon", "status", "--socket", sock, "--spool-dir", str(tmp_path / "none"))
    assert f"spool         no files waiting in {tmp_path / 'none'}" in empty.stdout


def connected_with_a_run(socket_path: Path, store: Path) -> tuple[RawClient, str]:
    """A raw client of ``store`` whose first batch, creating a run, is written; the client and the run id."""
    run_id = uuid.uuid4().hex
    raw = RawClient(socket_path, timeout=60)
    assert isinstance(raw.hello(str(store)), Welcome)
    raw.send(Batch(seq=1, records=[create_run_record(run_id)]))
    assert raw.next_event() == Ack(seq=1)
    return raw, run_id


def test_status_says_when_a_store_error_last_happened_and_that_writes_resumed(small_disk: Path, daemon: DaemonProcess) -> None:
    # "error The store ... (No space left on device) (x15)" stayed after the store recovered, with
    # no time and no word that it had.
    store, filler = small_disk / "mlruns", small_disk / "filler"
    raw, run_id = connected_with_a_run(daemon.paths.socket, store)
    try:
        fill(filler)
        raw.send(Batch(seq=2, records=metric_records(run_id, "x", 5000)))
        assert isinstance(raw.next_event(), ErrorReply)  # store_unavailable: it holds the batch
        refusing = trackd_cli("daemon", "status", "--socket", str(daemon.paths.socket))
        filler.unlink()
        assert raw.next_event() == Ack(seq=2)
    finally:
        filler.unlink(missing_ok=True)
        raw.close()
    kind = rf"The store at {re.escape(str(store))} cannot be written \(No space left on device\)"
    assert re.search(rf"error +{kind} \(x\d+, last \d+ s ago; still refusing writes\)", refusing.stdout), refusing.stdout
    resumed = trackd_cli("daemon", "status", "--socket", str(daemon.paths.socket))
    assert re.search(rf"error +{kind} \(x\d+, last \d+ s ago; writes resumed \d+ s ago\)", resumed.stdout), resumed.stdout
    (times,) = daemon.status()["error_times"].values()
    assert times["refusing"] == 0 and times["resumed_s_ago"] <= times["last_s_ago"]


@contextlib.contextmanager
def frozen_disk(folder: Path, image: Path) -> Iterator[Callable[[], None]]:
    """An ext4 file system mounted on ``folder``; yields a function that freezes it (writes block
    in the kernel until it is thawed), thawed and unmounted after. Skips where it cannot be mounted."""
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, text=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True, text=True) if made.returncode == 0 else made
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop file system here: {mounted.stderr.strip()}")
    frozen = False

    def freeze() -> None:
        nonlocal frozen
        subprocess.run(["fsfreeze", "-f", str(folder)], check=True)
        frozen = True

    try:
        yield freeze
    finally:
        if frozen:
            subprocess.run(["fsfreeze", "-u", str(folder)], check=True)
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def blocked_in_the_kernel(pid: int) -> bool:
    """Whether a thread of ``pid`` sleeps uninterruptibly (state D): a write the frozen disk holds."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "stat").read_text().rpartition(")")[2].split()[0] == "D":
                return True
    return False


def test_status_counts_the_bytes_of_a_write_its_disk_holds_up(tmp_path: Path, daemon: DaemonProcess) -> None:
    # "69 events waiting to be written (0 bytes, estimated)": the write under way counted its
    # events in the backlog but not their bytes.
    disk = tmp_path / "disk"
    disk.mkdir()
    with frozen_disk(disk, tmp_path / "disk.img") as freeze:
        raw, run_id = connected_with_a_run(daemon.paths.socket, disk / "mlruns")
        try:
            freeze()
            raw.send(Batch(seq=2, records=metric_records(run_id, "x", 69)))
            wait_for(lambda: blocked_in_the_kernel(daemon.pid), 30, message="the daemon's write to block on the frozen disk")
            status = daemon.status()
            text = trackd_cli("daemon", "status", "--socket", str(daemon.paths.socket))
        finally:
            raw.close()
    assert status["backlog_records"] == 69 and status["backlog_bytes"] >= 69 * 112, (status["backlog_records"], status["backlog_bytes"])
    assert re.search(r"backlog +69 events waiting to be written \([\d.]+ KiB, estimated\)", text.stdout), text.stdout


def test_daemon_start_passes_the_daemons_flags_on_over_trackd_daemon_args(paths: DaemonPaths) -> None:
    # `trackd daemon start --max-connections 5` gave "trackd: error: unrecognized arguments".
    env = {**inherited_env(), "TRACKD_DAEMON_ARGS": "--max-connections 1 --max-records 10"}
    started = trackd_cli("daemon", "start", "--socket", str(paths.socket), "--max-connections", "2", env=env)
    assert started.returncode == 0, started.stderr
    held = [RawClient(paths.socket), RawClient(paths.socket)]
    try:
        reply = refusal(paths.socket)
    finally:
        for raw in held:
            raw.close()
    assert isinstance(reply, ErrorReply) and "(--max-connections 2)" in reply.message, reply


def test_daemon_start_leaves_trackd_daemon_args_in_force_for_flags_it_was_not_given(paths: DaemonPaths) -> None:
    env = {**inherited_env(), "TRACKD_DAEMON_ARGS": "--max-connections 1"}
    started = trackd_cli("daemon", "start", "--socket", str(paths.socket), env=env)
    assert started.returncode == 0, started.stderr
    held = RawClient(paths.socket)
    try:
        reply = refusal(paths.socket)
    finally:
        held.close()
    assert isinstance(reply, ErrorReply) and "(--max-connections 1)" in reply.message, reply


def test_daemon_start_help_lists_the_daemons_flags() -> None:
    shown = trackd_cli("daemon", "start", "--help").stdout
    daemon_flags = set(re.findall(r"--[a-z-]+", subprocess.run(
        [sys.executable, "-m", "trackd.daemon", "--help"], capture_output=True, text=True, timeout=30,
    ).stdout)) - {"--log-file"}
    assert daemon_flags <= set(re.findall(r"--[a-z-]+", shown)), daemon_flags - set(re.findall(r"--[a-z-]+", shown))
    assert "then the same flag in $TRACKD_DAEMON_ARGS" in shown
