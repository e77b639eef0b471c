"""A shared run takes its owner's name, tags and start time, whichever process's create reached the store first.

Every process that does not find a shared run in the store yet sends its own create of it: each
rank of a launcher, a spawn worker attached to its parent's run, a forked child sending its
parent's create again. The daemon made the run of the first to arrive and ignored the others, so
when rank 1's create (or a worker's) won the race the run was named "witty-fox-123", and rank 0's
run_name, tags, description and start time were lost, silently. The races are made deterministic
with two real daemons on one store (as ranks on two nodes of a shared file system log): the
owner's connected daemon is SIGSTOPped before the owner starts its run, the other process creates
the run through the other daemon, the test checks that it did, then SIGCONTs the first daemon and
reads the store back with MLflow once the owner's create is in.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, RawClient, child_env, create_run_record, short_socket_path

from trackd import Client, ClientConfig
from trackd.protocol import Ack, Batch, Event, Flush, FlushDone, Welcome

# Variables a parent of the test suite may have set, which would change whom the run belongs to.
OWNERSHIP_VARIABLES = ("RANK", "MLFLOW_RUN_ID", "TRACKD_OWNED_RUNS")

# argv: store, run id. Rank 0 of a launcher: it owns the shared run. It goes on at each line on stdin.
OWNER = """
import sys, trackd
store, run_id = sys.argv[1:3]
trackd.set_tracking_uri(store)
trackd.set_experiment("shared")
print("connected", flush=True)
sys.stdin.readline()
run = trackd.start_run(run_id=run_id, run_name="resnet-lr0.1", tags={"lr": "0.1"}, description="rank 0's note")
print(run.info.start_time, flush=True)
sys.stdin.readline()
trackd.log_metric("loss", 0.5)
trackd.end_run()
"""

# argv: store, run id. Another rank: it only makes sure the run exists.
OTHER_RANK = """
import sys, trackd
store, run_id = sys.argv[1:3]
trackd.set_tracking_uri(store)
trackd.set_experiment("shared")
with trackd.start_run(run_id=run_id):
    trackd.log_metric("loss", 0.7)
"""


def env_for(socket_path: Path, **extra: str) -> dict[str, str]:
    env = child_env(socket_path, TRACKD_AUTOSTART="0")
    for name in OWNERSHIP_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env


@pytest.fixture
def other_daemon() -> Iterator[DaemonProcess]:
    """A second real daemon, on a socket of its own."""
    proc = DaemonProcess(short_socket_path()).start()
    yield proc
    code = proc.stop()
    shutil.rmtree(proc.paths.socket.parent, ignore_errors=True)
    assert code == 0, f"daemon exited with {code}:\n{proc.log()}"


def owner_process(script: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *script], env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def go_on(process: subprocess.Popen[str]) -> str:
    """Let ``process`` go on to its next stop, and return the line it prints there."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_rank_0_names_the_run_when_another_ranks_create_reaches_the_store_first(
    daemon: DaemonProcess, other_daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex
    owner = owner_process(["-c", OWNER, str(store), run_id], env_for(daemon.paths.socket, RANK="0"), tmp_path)
    assert owner.stdout is not None and owner.stdout.readline().strip() == "connected"
    daemon.signal(signal.SIGSTOP)
    try:
        start_time = int(go_on(owner))  # its create is sent, not read: its daemon is stopped
        other = subprocess.run(
            [sys.executable, "-c", OTHER_RANK, str(store), run_id], env=env_for(other_daemon.paths.socket, RANK="1"),
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert other.returncode == 0, other.stderr
        reader = MlflowClient(tracking_uri=str(store))
        first = reader.get_run(run_id)
        # The race as it happens: rank 1's create made the run, under a name of its own.
        assert first.info.run_name != "resnet-lr0.1" and "lr" not in first.data.tags
    finally:
        daemon.signal(signal.SIGCONT)
    _, err = owner.communicate("\n", timeout=60)
    assert owner.returncode == 0, err
    run = reader.get_run(run_id)
    assert run.info.run_name == "resnet-lr0.1"
    assert run.data.tags["mlflow.runName"] == "resnet-lr0.1"
    assert run.data.tags["lr"] == "0.1"
    assert run.data.tags["mlflow.note.content"] == "rank 0's note"
    assert run.info.start_time == start_time
    assert run.info.status == "FINISHED"
    assert [m.value for m in reader.get_metric_history(run_id, "loss")] == [0.7, 0.5]


# argv: store, the other daemon's socket. The parent owns its run; its spawn worker attaches by
# id, through the other daemon (TRACKD_SOCKET changed before it starts).
SPAWN_PARENT = """
import multiprocessing, os, sys, trackd

def work(run_id):
    with trackd.start_run(run_id=run_id, run_name="worker-name"):
        trackd.log_metric("worker", 1.0)

if __name__ == "__main__":
    trackd.set_tracking_uri(sys.argv[1])
    trackd.set_experiment("spawned")
    print("connected", flush=True)
    sys.stdin.readline()
    run = trackd.start_run(run_name="parent-name", tags={"owner": "parent"})
    os.environ["TRACKD_SOCKET"] = sys.argv[2]
    worker = multiprocessing.get_context("spawn").Process(target=work, args=(run.info.run_id,))
    worker.start()
    worker.join()
    print(run.info.run_id, worker.exitcode, flush=True)
    sys.stdin.readline()
    trackd.end_run()
"""


def test_a_spawn_workers_create_reaching_the_store_first_does_not_name_its_parents_run(
    daemon: DaemonProcess, other_daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    script = tmp_path / "parent.py"  # a file, not -c: spawn children import the parent's main module
    script.write_text(SPAWN_PARENT)
    parent = owner_process([str(script), str(store), str(other_daemon.paths.socket)], env_for(daemon.paths.socket), tmp_path)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "connected"
    daemon.signal(signal.SIGSTOP)
    try:
        run_id, exitcode = go_on(parent).split()
        assert exitcode == "0"
        reader = MlflowClient(tracking_uri=str(store))
        assert reader.get_run(run_id).info.run_name == "worker-name"  # the worker's create came first
    finally:
        daemon.signal(signal.SIGCONT)
    _, err = parent.communicate("\n", timeout=60)
    assert parent.returncode == 0, err
    run = reader.get_run(run_id)
    assert (run.info.run_name, run.data.tags["owner"], run.info.status) == ("parent-name", "parent", "FINISHED")


def test_client_create_run_of_a_new_id_is_the_owners_and_of_an_existing_one_only_attaches(
    daemon: DaemonProcess, other_daemon: DaemonProcess, store: Path
) -> None:
    run_id = uuid.uuid4().hex
    owner = Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False))
    other = Client(store, config=ClientConfig(socket_path=other_daemon.paths.socket, autostart=False))
    reader = MlflowClient(tracking_uri=str(store))
    try:
        experiment_id = owner.create_experiment("api")  # connected
        daemon.signal(signal.SIGSTOP)
        try:
            owner.create_run(experiment_id, tags={"by": "owner"}, run_name="api-owner", run_id=run_id)
            other.create_run(experiment_id, run_name="other", run_id=run_id, owner=False)
            other.flush()
            assert reader.get_run(run_id).info.run_name == "other"
        finally:
            daemon.signal(signal.SIGCONT)
        owner.flush()
        # A run in the store (and created through this client): only attached to, though named.
        other.create_run(experiment_id, run_name="late", run_id=run_id)
        other.flush()
    finally:
        owner.close()
        other.close()
    run = reader.get_run(run_id)
    assert (run.info.run_name, run.data.tags["by"]) == ("api-owner", "owner")


# argv: store, which process flushes first. The parent renames its run before it forks; the
# child's first log sends the parent's create again (the parent's may not have arrived).
FORK = """
import os, sys, trackd
store, first = sys.argv[1:3]
trackd.set_tracking_uri(store)
trackd.set_experiment("forked")
run = trackd.start_run(run_name="first-name")
trackd.set_tag("mlflow.runName", "renamed")
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(go_r, 1)
    trackd.log_metric("child", 1.0)
    trackd.flush()
    os._exit(0)
if first == "parent":
    trackd.flush()
os.write(go_w, b"x")
_, status = os.waitpid(pid, 0)
trackd.flush()
print(run.info.run_id, status, flush=True)
trackd.end_run()
"""


@pytest.mark.parametrize("first", ["parent", "child"])
def test_a_forked_childs_resent_create_keeps_the_name_its_parent_set(
    daemon: DaemonProcess, store: Path, tmp_path: Path, first: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK, str(store), first], env=child_env(daemon.paths.socket, TRACKD_AUTOSTART="0"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_id, status = done.stdout.split()
    assert status == "0"
    reader = MlflowClient(tracking_uri=str(store))
    run = reader.get_run(run_id)
    assert (run.info.run_name, run.data.tags["mlflow.runName"]) == ("renamed", "renamed")
    assert [m.value for m in reader.get_metric_history(run_id, "child")] == [1.0]


def flushed(raw: RawClient) -> Event:
    """Send a flush barrier and return its answer (the acks and any rejection before it skipped)."""
    raw.send(Flush(request_id=1))
    while isinstance(event := raw.next_event(), Ack):
        pass
    return event


def test_a_protocol_7_clients_creates_make_a_run_and_change_nothing_of_one_that_exists(
    daemon: DaemonProcess, store: Path
) -> None:
    run_id = uuid.uuid4().hex
    legacy = create_run_record(run_id)  # seven items: no owner, as protocols 6 and 7 send it
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store), protocol_version=7), Welcome)
        renamed = (*legacy[:4], "another-name", *legacy[5:])
        raw.send(Batch(seq=1, records=[legacy, renamed]))
        assert flushed(raw) == FlushDone(request_id=1, acked_seq=1)
    finally:
        raw.close()
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    # The first made the run; the second, which could be any rank's, changed nothing (as protocol 7's daemon did).
    assert run.info.run_name == "raw-run" and run.data.tags["mlflow.runName"] == "raw-run"


def test_an_owner_record_renames_a_run_an_attach_record_made(daemon: DaemonProcess, store: Path) -> None:
    run_id = uuid.uuid4().hex
    attach = (*create_run_record(run_id), False)  # owner false: only makes sure the run exists
    owner = (*attach[:4], "owner-name", 1_600_000_000_000, {"k": "v"}, True)
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store)), Welcome)
        raw.send(Batch(seq=1, records=[attach]))
        raw.send(Batch(seq=2, records=[owner, attach]))
        assert flushed(raw) == FlushDone(request_id=1, acked_seq=2)
    finally:
        raw.close()
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert (run.info.run_name, run.info.start_time, run.data.tags["k"]) == ("owner-name", 1_600_000_000_000, "v")


CLIENT_THEN_FLUENT = """
import sys, trackd
trackd.set_tracking_uri(sys.argv[1])
run = trackd.MlflowClient(tracking_uri=sys.argv[1]).create_run("0", run_name="foo", tags={"team": "x"})
with trackd.start_run(run_id=run.info.run_id):
    trackd.log_metric("m", 1.0)
print(run.info.run_id, run.info.start_time)
"""


def test_a_run_created_by_the_client_then_started_by_id_keeps_the_clients_name(daemon: DaemonProcess, store: Path) -> None:
    # MLflow's idiom: MlflowClient().create_run(..., run_name=...), then start_run(run_id=...). The
    # fluent call's create, made before the client's reached the store, was sent as the owner's:
    # the run took its random name and start time.
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_THEN_FLUENT, str(store)], env=env_for(daemon.paths.socket),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_id, start_time = done.stdout.split()
    run = MlflowClient(str(store)).get_run(run_id)
    assert run.info.run_name == "foo" and run.data.tags["mlflow.runName"] == "foo", run.info.run_name
    assert run.data.tags["team"] == "x" and run.info.start_time == int(start_time)
    assert run.info.status == "FINISHED"
