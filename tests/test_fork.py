"""A training process that forks or spawns workers after start_run: every worker's points arrive once.

Each scenario is a real script run in its own interpreter; it prints one JSON line, and the test
reads the store afterwards with trackd's reader and with MLflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env
from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths
from trackd.store import StoreReader

WORKERS = 4
PARENT_POINTS = 2_000
WORKER_POINTS = 5_000

# The parent logs half its points (still buffered at the fork), forks, logs the rest while its
# children log; each child exits normally. The parent waits for them with a deadline, reads the
# run's status before ending it, and prints what it saw.
OS_FORK = """
import json, os, sys, time, trackd
from trackd.store import StoreReader
run = trackd.start_run()
for step in range(PARENT_POINTS // 2):
    trackd.log_metric("parent", float(step), step=step)
pids = []
for worker in range(WORKERS):
    pid = os.fork()
    if pid == 0:
        for step in range(WORKER_POINTS):
            trackd.log_metric(f"worker{worker}", float(step), step=step)
            if step == WORKER_POINTS - 11:
                time.sleep(0.2)  # the sender drains; the last ten points are still buffered at exit
        sys.exit(0)  # a normal exit: atexit delivers the child's points
    pids.append(pid)
for step in range(PARENT_POINTS // 2, PARENT_POINTS):
    trackd.log_metric("parent", float(step), step=step)
started, exits = time.monotonic(), []
for pid in pids:
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() - started > 30:
            os.kill(pid, 9)
            sys.exit(f"forked child {pid} hung at exit")
        time.sleep(0.01)
    exits.append(os.waitstatus_to_exitcode(done[1]))
trackd.flush(timeout=30)
status = StoreReader(trackd.get_tracking_uri()).get_run(run.info.run_id).info.status
print(json.dumps({"run_id": run.info.run_id, "exits": exits, "waited": time.monotonic() - started, "status_before_end": status}))
"""

# multiprocessing with the fork start method: the children leave through os._exit, skipping
# atexit, so trackd's multiprocessing finalizer must deliver their points.
MP_FORK = """
import json, multiprocessing, time, trackd
from trackd.store import StoreReader

def work(worker):
    for step in range(WORKER_POINTS):
        trackd.log_metric(f"worker{worker}", float(step), step=step)
        if step == WORKER_POINTS - 11:
            time.sleep(0.2)  # the sender drains; the last ten points are still buffered at exit

if __name__ == "__main__":
    run = trackd.start_run()
    for step in range(PARENT_POINTS // 2):
        trackd.log_metric("parent", float(step), step=step)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=work, args=(worker,)) for worker in range(WORKERS)]
    started = time.monotonic()
    for process in workers:
        process.start()
    for step in range(PARENT_POINTS // 2, PARENT_POINTS):
        trackd.log_metric("parent", float(step), step=step)
    for process in workers:
        process.join(timeout=30)
    exits = [process.exitcode for process in workers]
    trackd.flush(timeout=30)
    status = StoreReader(trackd.get_tracking_uri()).get_run(run.info.run_id).info.status
    print(json.dumps({"run_id": run.info.run_id, "exits": exits, "waited": time.monotonic() - started, "status_before_end": status}))
"""

# multiprocessing with spawn: fresh interpreters that attach to the parent's run by its id.
MP_SPAWN = """
import json, multiprocessing, time, trackd
from trackd.store import StoreReader

def work(run_id, worker):
    trackd.start_run(run_id=run_id)
    for step in range(WORKER_POINTS):
        trackd.log_metric(f"worker{worker}", float(step), step=step)
        if step == WORKER_POINTS - 11:
            time.sleep(0.2)  # the sender drains; the last ten points are still buffered at exit

if __name__ == "__main__":
    run = trackd.start_run()
    for step in range(PARENT_POINTS // 2):
        trackd.log_metric("parent", float(step), step=step)
    trackd.flush(timeout=30)  # the run exists in the store before the children look for it
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=work, args=(run.info.run_id, worker)) for worker in range(WORKERS)]
    started = time.monotonic()
    for process in workers:
        process.start()
    for step in range(PARENT_POINTS // 2, PARENT_POINTS):
        trackd.log_metric("parent", float(step), step=step)
    for process in workers:
        process.join(timeout=60)
    exits = [process.exitcode for process in workers]
    trackd.flush(timeout=30)
    status = StoreReader(trackd.get_tracking_uri()).get_run(run.info.run_id).info.status
    print(json.dumps({"run_id": run.info.run_id, "exits": exits, "waited": time.monotonic() - started, "status_before_end": status}))
"""


# multiprocessing's fork children leave through os._exit and clear multiprocessing.util's
# finalizer registry after trackd's at-fork hook ran; this used to lose the points still
# buffered when the target returned (the finalizer is now registered after that clear, by an
# after-fork callback: _lifecycle.prepare_multiprocessing_child).


def _run_job(source: str, daemon: DaemonProcess, store: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as tmp_path/job.py (a file, not -c: spawn children import the main module to
    find their target), logging through the test's daemon into ``store``."""
    job = tmp_path / "job.py"
    job.write_text(source)
    return subprocess.run(
        [sys.executable, str(job), *args], env=child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store)),
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "script",
    [OS_FORK, MP_FORK, MP_SPAWN],
    ids=["os.fork", "multiprocessing-fork", "multiprocessing-spawn"],
)
def test_workers_started_after_start_run_log_to_the_parents_run_exactly_once(
    script: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    constants = f"WORKERS, PARENT_POINTS, WORKER_POINTS = {WORKERS}, {PARENT_POINTS}, {WORKER_POINTS}\n"
    result = _run_job(constants + textwrap.dedent(script), daemon, store, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["exits"] == [0] * WORKERS, result.stderr
    # Children exit promptly: nothing in them waits for the parent's connection or buffer.
    assert report["waited"] < 20, f"the workers took {report['waited']:.1f} s to exit"
    # Only the parent ends the run: the children's exits left it running.
    assert report["status_before_end"] == "RUNNING"
    run_id = report["run_id"]
    reader = StoreReader(store)
    # The parent's points once each: a child never resent the buffer it inherited.
    assert [m.step for m in reader.get_metric_history(run_id, "parent")] == list(range(PARENT_POINTS))
    for worker in range(WORKERS):
        steps = [m.step for m in reader.get_metric_history(run_id, f"worker{worker}")]
        assert steps == list(range(WORKER_POINTS)), f"worker {worker}: points lost, duplicated or out of order"
    mlflow = MlflowClient(tracking_uri=str(store))
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert sorted(run.data.metrics) == ["parent", *(f"worker{w}" for w in range(WORKERS))]
    assert len(mlflow.get_metric_history(run_id, "worker0")) == WORKER_POINTS


# Children that make their first client after the fork (the parent had none: a Pool or DataLoader
# made before any logging, or forkserver children, forked from a server that never logs). They
# leave through os._exit too, and lost everything they had logged, without a word: only senders
# that existed at the fork had a multiprocessing finalizer.
FIRST_CLIENT_IN_CHILD = """
import json, multiprocessing, sys, uuid, trackd
from trackd.store import StoreReader

def work(run_id, worker):
    trackd.start_run(run_id=run_id)  # no end_run: the child's exit ends it, as atexit would
    for step in range(WORKER_POINTS):
        trackd.log_metric(f"worker{worker}", float(step), step=step)

if __name__ == "__main__":
    run_id = uuid.uuid4().hex
    context = multiprocessing.get_context(sys.argv[1])
    workers = [context.Process(target=work, args=(run_id, worker)) for worker in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    print(json.dumps({"run_id": run_id, "exits": [process.exitcode for process in workers]}))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_children_whose_first_client_is_made_after_the_fork_deliver_everything_at_exit(
    method: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    constants = f"WORKERS, WORKER_POINTS = {WORKERS}, {WORKER_POINTS}\n"
    result = _run_job(constants + textwrap.dedent(FIRST_CLIENT_IN_CHILD), daemon, store, tmp_path, method)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["exits"] == [0] * WORKERS
    mlflow = MlflowClient(tracking_uri=str(store))
    for worker in range(WORKERS):
        steps = [m.step for m in mlflow.get_metric_history(report["run_id"], f"worker{worker}")]
        assert sorted(steps) == list(range(WORKER_POINTS)), f"worker {worker}: {len(steps)} points"
    assert mlflow.get_run(report["run_id"]).info.status == "FINISHED"  # ended by the children's exits


# Pool.terminate() (what `with Pool(...)` ends with) SIGTERMs workers that are blocked taking their
# queue's lock, which the parent holds. A SIGTERM that lands on a thread other than the main one
# (before the sender thread blocked such signals, often that thread), or just before the main
# thread blocks, only flags the Python handler, and the worker waited for ever. Here a thread of
# the worker's own takes the signal while the main thread waits on a lock the parent holds.
SIGTERM_ON_ANOTHER_THREAD = """
import json, multiprocessing, signal, threading, time, trackd
from trackd.store import StoreReader

def work(lock, ready):
    trackd.log_metric("loss", 0.5)  # an implicit run this child owns
    def take_the_signal():
        ready.wait()
        time.sleep(0.3)  # the main thread is in lock.acquire() by now
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=take_the_signal, daemon=True).start()
    ready.set()
    lock.acquire()

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    lock, ready = context.Lock(), context.Event()
    lock.acquire()
    worker = context.Process(target=work, args=(lock, ready))
    worker.start()
    worker.join(timeout=20)
    hung = worker.is_alive()
    if hung:
        worker.kill()
    print(json.dumps({"hung": hung, "exit": worker.exitcode}))
"""


def test_a_worker_blocked_in_c_still_handles_a_sigterm_another_thread_took(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    result = _run_job(textwrap.dedent(SIGTERM_ON_ANOTHER_THREAD), daemon, store, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert not report["hung"] and report["exit"] == -15, report  # trackd's handler ran, then re-raised
    [run] = MlflowClient(tracking_uri=str(store)).search_runs(["0"])
    assert run.data.metrics == {"loss": 0.5} and run.info.status == "KILLED"


# A spawn child leaves through sys.exit: atexit runs after its non-daemon threads are joined. A
# multiprocessing finalizer ran before that join, closed the clients, and the points a thread
# logged afterwards went into new, implicit runs.
SPAWN_CHILD_WITH_A_THREAD = """
import json, multiprocessing, sys, threading, time, uuid, trackd

def work(run_id):
    trackd.start_run(run_id=run_id)
    def late():
        for step in range(20):
            time.sleep(0.01)
            trackd.log_metric("late", float(step), step=step)
    threading.Thread(target=late).start()  # not a daemon thread: the interpreter waits for it

if __name__ == "__main__":
    run_id = uuid.uuid4().hex
    child = multiprocessing.get_context("spawn").Process(target=work, args=(run_id,))
    child.start()
    child.join(timeout=60)
    print(json.dumps({"run_id": run_id, "exit": child.exitcode}))
"""

# A multiprocessing child whose target raises: multiprocessing prints the traceback and exits 1
# without setting sys.last_value, so the exit hook read it as a clean exit (FINISHED).
FAILING_CHILD = """
import json, multiprocessing, sys, trackd

def work():
    run = trackd.start_run()
    print(run.info.run_id, flush=True)
    trackd.log_metric("loss", 1.0)
    raise ValueError("diverged")

if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[1]).Process(target=work)
    child.start()
    child.join(timeout=60)
    print(json.dumps({"exit": child.exitcode}))
"""


def test_a_spawn_child_delivers_what_its_threads_log_after_its_target_returned(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    result = _run_job(textwrap.dedent(SPAWN_CHILD_WITH_A_THREAD), daemon, store, tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["exit"] == 0
    mlflow = MlflowClient(tracking_uri=str(store))
    assert [run.info.run_id for run in mlflow.search_runs(["0"])] == [report["run_id"]]
    assert [m.step for m in mlflow.get_metric_history(report["run_id"], "late")] == list(range(20))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_child_whose_target_raises_ends_its_run_failed(
    method: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    result = _run_job(textwrap.dedent(FAILING_CHILD), daemon, store, tmp_path, method)
    assert result.returncode == 0 and "ValueError: diverged" in result.stderr, result.stderr
    run_id, report = result.stdout.splitlines()[0], json.loads(result.stdout.splitlines()[-1])
    assert report["exit"] == 1
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert (run.info.status, run.data.metrics) == ("FAILED", {"loss": 1.0})


# A forked child whose threads log at once to the run the parent had just started, before its
# creation reached the store. One thread took the inherited creation to send it again; until it
# had noted the run as created, another thread's first call found the run neither inherited, nor
# created, nor in the store, and raised RunNotFound (a DataLoader worker with a monitoring thread).
THREADS_RACE_TO_THE_INHERITED_RUN = """
import json, os, sys, threading, trackd

def child():
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    barrier, errors = threading.Barrier(THREADS), []
    def log(thread):
        barrier.wait()
        try:
            trackd.log_param(f"thread{thread}", thread)
        except Exception as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=log, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trackd.flush(timeout=30)
    print(json.dumps(errors), flush=True)
    os._exit(1 if errors else 0)

run_ids, exits = [], []
for attempt in range(ATTEMPTS):
    run = trackd.start_run()  # its creation is still in this process's buffer at the fork
    pid = os.fork()
    if pid == 0:
        child()
    exits.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    run_ids.append(run.info.run_id)
    trackd.end_run()
print(json.dumps({"run_ids": run_ids, "exits": exits}))
"""


def test_threads_of_a_forked_child_may_all_log_first_to_the_run_the_parent_just_started(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    threads, attempts = 8, 4
    constants = f"THREADS, ATTEMPTS = {threads}, {attempts}\n"
    result = _run_job(constants + textwrap.dedent(THREADS_RACE_TO_THE_INHERITED_RUN), daemon, store, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["exits"] == [0] * attempts, result.stdout + result.stderr
    mlflow = MlflowClient(tracking_uri=str(store))
    for run_id in report["run_ids"]:
        assert mlflow.get_run(run_id).data.params == {f"thread{t}": str(t) for t in range(threads)}


# A sweep: the parent starts its "sweep" run, then a fork Pool runs the trials, each in a run of
# its own. Every worker inherited the sweep run as its active run, and its start_run() raised
# "Run with UUID ... is already active" (MLflow's forked child has no active run, so there it
# works); after a trial the worker logs to the sweep run again.
FORK_POOL_SWEEP = """
import json, multiprocessing, sys, trackd

def trial(args):
    trial, parent_run_id = args
    how = {"parent_run_id": {"parent_run_id": parent_run_id}, "nested": {"nested": True}, "plain": {}}[sys.argv[1]]
    with trackd.start_run(run_name=f"trial-{trial}", **how) as run:
        trackd.log_metric("loss", 1.0 / (trial + 1))
        if trial % 3 == 0:
            raise ValueError("pruned")
    return run.info.run_id

def attempt(args):
    try:
        return trial(args)
    except ValueError:
        return None

if __name__ == "__main__":
    with trackd.start_run(run_name="sweep") as sweep:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(attempt, [(trial, sweep.info.run_id) for trial in range(TRIALS)])
    print(json.dumps({"sweep": sweep.info.run_id, "results": results}))
"""


@pytest.mark.parametrize("how", ["parent_run_id", "nested", "plain"])
def test_fork_pool_workers_start_a_run_per_trial_under_the_inherited_sweep_run(
    how: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    trials = 6
    result = _run_job(f"TRIALS = {trials}\n" + textwrap.dedent(FORK_POOL_SWEEP), daemon, store, tmp_path, how)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    mlflow = MlflowClient(tracking_uri=str(store))
    runs = {run.data.tags["mlflow.runName"]: run for run in mlflow.search_runs(["0"])}
    assert sorted(runs) == sorted(["sweep", *(f"trial-{trial}" for trial in range(trials))])
    assert runs["sweep"].info.status == "FINISHED" and runs["sweep"].data.metrics == {}
    # As MLflow's: start_run() with neither nested nor parent_run_id starts a run of no parent.
    parent = None if how == "plain" else report["sweep"]
    for trial in range(trials):
        run = runs[f"trial-{trial}"]
        assert run.data.tags.get("mlflow.parentRunId") == parent
        assert run.info.status == ("FAILED" if trial % 3 == 0 else "FINISHED")
        assert run.data.metrics == {"loss": 1.0 / (trial + 1)}


# The parent forks long-lived workers (DataLoader workers, persistent) in the moments its sender
# thread starts a daemon, then flushes; each worker only sleeps, holding what it inherited.
FORK_WHILE_A_DAEMON_STARTS = """
import os, sys, time, trackd
trackd.start_run()
trackd.log_metric("a", 1.0)  # wakes the sender thread, which finds no daemon and starts one
workers, deadline = [], time.monotonic() + 0.5
while time.monotonic() < deadline and len(workers) < 200:
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    workers.append(pid)
    time.sleep(0.001)
started = time.monotonic()
try:
    trackd.flush(timeout=15)
    print("flushed", flush=True)
except trackd.FlushTimeout:
    print("flush timed out", flush=True)
for pid in workers:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


@pytest.mark.timeout(120)
def test_workers_forked_while_the_sender_starts_a_daemon_do_not_hold_it_up(tmp_path: Path, paths: DaemonPaths) -> None:
    # A worker forked while the sender thread was in subprocess.Popen (starting the daemon) inherited
    # Popen's error pipe, which Popen reads until every copy is closed: the sender waited for the
    # worker to exit (for ever, with persistent DataLoader workers), its buffer filled, and the
    # training loop blocked in log_metric.
    env = child_env(paths.socket, TRACKD_TRACKING_URI=str(tmp_path / "mlruns"), TRACKD_AUTOSTART="1")
    result = subprocess.run([sys.executable, "-c", FORK_WHILE_A_DAEMON_STARTS], env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "flushed\n", result.stdout + result.stderr


# fork_worker() forks a long-lived worker that reports how many sockets it holds; returns its pid
# and that count. A child forked while the parent's client closes (a Pool's thread replacing
# workers as the SIGTERM handler closes) must hold none: the parent's connection is its only one.
FORK_A_WORKER = """
import os, time

def fork_worker():
    read, write = os.pipe()
    worker = os.fork()
    if worker == 0:
        sockets = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass  # the listing's own descriptor, closed by now
        os.write(write, str(sockets).encode())
        time.sleep(30)
        os._exit(0)
    os.close(write)
    return worker, int(os.read(read, 16))
"""

# Placed at close's drop count by a stderr whose write() forks there.
FORK_AS_THE_CLIENT_CLOSES = FORK_A_WORKER + """
import sys, trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
client.flush()
for step in range(20_000):  # TRACKD_MAX_BUFFERED=1 under drop: most are dropped, counted at close
    client.log_metric(run_id, "a", float(step), step=step)
class ForkOnDropCount:
    def __init__(self, real):
        self.real, self.worker = real, None
    def write(self, text):
        if self.worker is None and "in all because the buffer was full" in text:
            self.worker, self.sockets = fork_worker()
        return self.real.write(text)
    def flush(self):
        self.real.flush()
sys.stderr = ForkOnDropCount(sys.stderr)
client.close()
os.kill(sys.stderr.worker, 9)
os.waitpid(sys.stderr.worker, 0)
print("worker sockets", sys.stderr.sockets)
"""

# Placed as close() closes the daemon socket, by a profile hook that forks when the socket's
# close is called (before its body runs).
FORK_AS_THE_SOCKET_CLOSES = FORK_A_WORKER + """
import sys, trackd
from trackd.client._transport import Transport
client = trackd.Client()
client.create_run("0")
client.flush()
forked = []
def fork_at_the_socket_close(frame, event, arg):
    if event == "call" and frame.f_code is Transport.close.__code__ and not forked:
        forked.append(None)  # first: the worker's own at-fork hooks call Transport.close too
        forked[0] = fork_worker()
sys.setprofile(fork_at_the_socket_close)
client.close()
sys.setprofile(None)
worker, sockets = forked[0]
os.kill(worker, 9)
os.waitpid(worker, 0)
print("worker sockets", sockets)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts the worker's sockets in /proc")
def test_a_worker_forked_while_the_client_closes_does_not_hold_its_daemon_connection(daemon: DaemonProcess, store: Path) -> None:
    # The closing sender left the fork hook's list before its socket was closed: a worker forked
    # in that window kept the connection open after the parent exited, so the daemon never saw
    # the parent go (its runs were not failed if it was killed, `trackd daemon stop` waited its
    # full timeout and logged what that connection had sent last as lost).
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_ON_FULL="drop", TRACKD_MAX_BUFFERED="1")
    result = subprocess.run([sys.executable, "-c", FORK_AS_THE_CLIENT_CLOSES], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "worker sockets 0\n", result.stdout + result.stderr


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts the worker's sockets in /proc")
def test_a_worker_forked_as_the_client_closes_its_socket_does_not_hold_its_daemon_connection(
    daemon: DaemonProcess, store: Path
) -> None:
    # close() took the socket off the sender and closed it a moment later: a worker forked between
    # the two found no socket to close in its at-fork hook and kept the parent's connection open.
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store))
    result = subprocess.run([sys.executable, "-c", FORK_AS_THE_SOCKET_CLOSES], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "worker sockets 0\n", result.stdout + result.stderr
