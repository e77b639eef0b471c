"""Under random process kills, signals and daemon kills, stops and restarts, does any accepted point
go missing or get duplicated, and does the store stay readable by MLflow?

For ``--seconds`` (60), ``--jobs`` (5) slots each run one job after another, a real process group
(``start_new_session``) logging through trackd with deterministic values, one of:

* ``train``: one process, 2 params, ``log_metrics`` of 2 keys per step every ~5 ms;
* ``pool``: a process that logs ``main`` while a fork ``Pool(3)`` runs 6 tasks, each logging its
  own key to the inherited run (``with Pool`` ends them by ``terminate()``: SIGTERM);
* ``ranks``: a launcher (no trackd) starting 3 ranks (``RANK=0..2``) that share one run id, each
  with its own key; rank 0 ends the run once the others are done;
* ``suite``: a driver (no trackd) running short processes one after another, each a run of 3
  params and 3 points ending normally, or by ``trackd.flush()`` then ``os._exit(0)`` (one in 3).

Every process writes a ledger (``<run id>.<pid>`` files): a line for each logging call after it
returned (what trackd ACCEPTED), ``S`` once ``start_run`` returned, ``E`` before a normal end,
``X <pending>`` before ``os._exit``. Faults come at random times (exponential gaps, mean
``--fault-interval``) from a seeded RNG: SIGTERM to a job's process group or to its main process,
SIGKILL to a group, SIGSTOP of the daemon for 0.5-12 s (past 10 s its clients spool), SIGKILL of
the daemon (the next client starts one) and ``trackd daemon stop`` (then ``trackd daemon start``,
or left to autostart). Each signal's targets are the group's pids listed from /proc just before
and after it is sent.

At the end: SIGCONT, wait for the jobs (one still running 90 s past its plan is hung: its stacks go
to its stderr log by SIGUSR1, then SIGKILL), ``trackd daemon start``, ``trackd sync``, wait until
the daemon is idle and no run is RUNNING (30 s), ``trackd daemon stop``; then read the store with
MLflow (every experiment, run, param and metric history) and line by line. What is checked:

* every accepted point of a process never SIGKILLed is in the store exactly once, with its value
  (SIGKILL loses at most the last send interval, more while the daemon is stopped: for those only
  "no duplicate" holds; their missing points are counted apart, as allowed);
* no (run, key, step) twice anywhere, no partial or malformed metric line, MLflow reads it all;
* each run's status fits its owner's fate: FINISHED after ``E``, FAILED after ``X`` or SIGKILL,
  KILLED after SIGTERM (FINISHED too if the signal came after ``E``).

Exits 1 on a missing or duplicated point, a wrong value or param, an unreadable store, a status
that does not fit, or a hung job; prints the fault sequence then.

Run:  .venv/bin/python benchmarks/chaos_soak.py [--seconds 60] [--seed 1] [--jobs 5] [--keep] [--json out.json]
(about 65-70 s with the defaults; not in `make bench`.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C

KINDS = ("train", "pool", "ranks", "suite")
FAULTS = {  # kind: weight
    "job-sigterm-group": 3, "job-sigterm-main": 1, "job-sigkill-group": 2,
    "daemon-sigstop": 2, "daemon-sigkill": 1, "daemon-stop-restart": 2,
}
HANG_AFTER = 90.0  # seconds past a job's planned end
TERMINAL = ("FINISHED", "FAILED", "KILLED")
# A run whose owner was SIGKILLed this soon after starting it may be absent: its events were accepted
# within a send interval (50 ms) of the kill, and a process's sender thread may not have connected or
# had a turn yet (the kill's time is taken after the signal; 2 loaded cores delay both).
KILL_WINDOW = 0.25

JOB = r'''
import faulthandler, os, signal, subprocess, sys, time, zlib
faulthandler.register(signal.SIGUSR1, all_threads=True)
KIND, LEDGER, RUN_ID, SECONDS = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ARG = sys.argv[5] if len(sys.argv) > 5 else ""

def value(key, step):
    return step + (zlib.crc32(key.encode()) % 1000) / 1000.0

_ledgers = {}
def ledger(run_id):
    """This process's ledger of a run (a forked worker opens its own)."""
    key = (run_id, os.getpid())
    if key not in _ledgers:
        _ledgers[key] = open(os.path.join(LEDGER, f"{run_id}.{os.getpid()}"), "a", buffering=1)
    return _ledgers[key]

def note(run_id, text):
    ledger(run_id).write(text + "\n")  # one write() per accepted call

def log_series(run_id, key, steps, pause):
    import trackd
    for step in range(steps):
        trackd.log_metric(key, value(key, step), step=step)
        note(run_id, f"M {key} {step}")
        time.sleep(pause)

def params(run_id, names):
    import trackd
    for name in names:
        trackd.log_param(name, f"{name}-{run_id[:8]}")
        note(run_id, f"P {name}")

def task(t):
    log_series(RUN_ID, f"task{t}", int(SECONDS / 2 / 0.006), 0.004)
    return t

if KIND == "train":
    import trackd
    trackd.start_run(run_id=RUN_ID, run_name="train")
    note(RUN_ID, f"S 1 {time.time():.3f}")
    params(RUN_ID, ["lr", "batch"])
    deadline, step = time.monotonic() + SECONDS, 0
    while time.monotonic() < deadline:
        trackd.log_metrics({"loss": value("loss", step), "acc": value("acc", step)}, step=step)
        note(RUN_ID, f"M loss {step}\nM acc {step}")
        step += 1
        time.sleep(0.005)
    note(RUN_ID, "E")
    trackd.end_run()
elif KIND == "pool":
    import multiprocessing as mp
    import trackd
    trackd.start_run(run_id=RUN_ID, run_name="pool")
    note(RUN_ID, f"S 1 {time.time():.3f}")
    params(RUN_ID, ["workers"])
    with mp.get_context("fork").Pool(3) as pool:
        result = pool.map_async(task, range(6))
        step = 0
        while not result.ready():
            trackd.log_metric("main", value("main", step), step=step)
            note(RUN_ID, f"M main {step}")
            step += 1
            time.sleep(0.01)
        result.get()
    note(RUN_ID, "E")
    trackd.end_run()
elif KIND == "ranks":
    ranks = [subprocess.Popen([sys.executable, __file__, "rank", LEDGER, RUN_ID, str(SECONDS), str(r)],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "3"}) for r in range(3)]
    for p in ranks:
        p.wait()
elif KIND == "rank":
    import trackd
    rank = int(ARG)
    trackd.start_run(run_id=RUN_ID, run_name="ranks")
    note(RUN_ID, f"S {int(rank == 0)} {time.time():.3f}")
    log_series(RUN_ID, f"rank{rank}/loss", int(SECONDS / 0.006), 0.005)
    open(os.path.join(LEDGER, f"{RUN_ID}.done{rank}"), "w").close()
    if rank == 0:  # the owner ends the run once the others are done (or 10 s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
                os.path.exists(os.path.join(LEDGER, f"{RUN_ID}.done{r}")) for r in (1, 2)):
            time.sleep(0.05)
    note(RUN_ID, "E")
    trackd.end_run()
elif KIND == "suite":
    deadline, i = time.monotonic() + SECONDS, 0
    while time.monotonic() < deadline:
        subprocess.run([sys.executable, __file__, "short", LEDGER, f"{RUN_ID[:-4]}{i:04x}", "0", str(i % 3 == 2)])
        i += 1
elif KIND == "short":
    import trackd
    with trackd.start_run(run_id=RUN_ID, run_name="suite"):
        note(RUN_ID, f"S 1 {time.time():.3f}")
        params(RUN_ID, ["model", "dataset", "size"])
        log_series(RUN_ID, "score", 3, 0)
        if ARG == "True":
            report = trackd.flush(timeout=30)
            note(RUN_ID, f"X {report.pending}")
            os._exit(0)
        note(RUN_ID, "E")
'''


@dataclass
class Job:
    index: int
    kind: str
    run_id: str
    seconds: float
    process: subprocess.Popen[bytes]
    started: float
    ended: float | None = None
    hung: bool = False


@dataclass
class Soak:
    """The folder, the environment and what happened: jobs, faults, and each pid's signals."""

    root: Path
    env: dict[str, str]
    rng: random.Random  # jobs: kinds, lengths, run ids
    fault_rng: random.Random  # faults: times, kinds, targets, durations (the same sequence for a seed)
    t0: float = field(default_factory=time.monotonic)
    jobs: list[Job] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    fates: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    stopped_pid: int | None = None
    resume_at: float = 0.0
    daemon_op: subprocess.Popen[bytes] | None = None
    start_after_op: bool = False
    longest_tick: float = 0.0
    # Wall-clock [SIGSTOP, SIGCONT or SIGKILL] of each stop of the daemon, and of each SIGKILL sent to a pid.
    stops: list[list[float]] = field(default_factory=list)
    killed_at: dict[int, float] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return Path(self.env["TRACKD_SOCKET"])

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "trackd", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def record(self, kind: str, **detail: Any) -> None:
        self.faults.append({"t": round(self.elapsed(), 2), "kind": kind, **detail})

    # -- processes ------------------------------------------------------------------------------

    def groups(self) -> dict[int, list[int]]:
        """Live (not zombie) pids of each job's process group, from /proc."""
        wanted = {job.process.pid for job in self.jobs if job.ended is None}
        found: dict[int, list[int]] = defaultdict(list)
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the ")": state, ppid, pgrp.
            if fields[0] not in "ZX" and int(fields[2]) in wanted:
                found[int(fields[2])].append(int(name))
        return found

    def signal_job(self, job: Job, signum: signal.Signals, whole_group: bool) -> list[int]:
        """Send ``signum`` to a job's group (or main process); return the pids it reached."""
        before = self.groups().get(job.process.pid, []) if whole_group else [job.process.pid]
        try:
            if whole_group:
                os.killpg(job.process.pid, signum)
            else:
                job.process.send_signal(signum)
        except ProcessLookupError:
            return []
        after = self.groups().get(job.process.pid, []) if whole_group else []
        pids = sorted(set(before) | set(after))
        for pid in pids:
            self.fates[pid].add(signum.name)
            if signum == signal.SIGKILL:
                self.killed_at.setdefault(pid, time.time())
        return pids

    def daemon_pid(self) -> int | None:
        """The pid in our daemon's pid file, only if that process is a daemon on our socket."""
        try:
            pid = int(Path(str(self.socket) + ".pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if b"trackd.daemon" in cmdline and str(self.socket).encode() in cmdline else None

    # -- the run --------------------------------------------------------------------------------

    def start_job(self, index: int, seconds: float) -> None:
        kind = self.rng.choice(KINDS)
        run_id = f"{index:08x}{self.rng.getrandbits(80):020x}0000"
        err = (self.root / "logs" / f"{index:03d}-{kind}.err").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(self.root / "job.py"), kind, str(self.root / "ledger"), run_id, f"{seconds:.2f}"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        err.close()
        self.jobs.append(Job(index, kind, run_id, seconds, process, self.elapsed()))

    def reap(self) -> None:
        groups = self.groups()
        for job in self.jobs:
            if job.ended is None:
                job.process.poll()
                if job.process.returncode is not None and job.process.pid not in groups:
                    job.ended = self.elapsed()
                elif self.elapsed() > job.started + job.seconds + HANG_AFTER:
                    self.signal_job(job, signal.SIGUSR1, True)  # stacks into the job's stderr log
                    time.sleep(1.0)
                    pids = self.signal_job(job, signal.SIGKILL, True)
                    job.hung = True
                    self.record("hung-job-killed", job=job.index, pids=pids)

    def inject(self) -> None:
        running = [j for j in self.jobs if j.ended is None]
        # Every draw is made whatever happens next, so a seed gives the same kinds, times and durations.
        kind = self.fault_rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        target, duration, then_start = self.fault_rng.random(), self.fault_rng.uniform(0.5, 12.0), self.fault_rng.random() < 0.5
        if kind.startswith("job-"):
            if not running:
                return self.record(kind, skipped="no job running")
            job = running[int(target * len(running))]
            group = kind.endswith("group") or job.kind == "pool"  # a pool's orphaned workers would wait for ever
            signum = signal.SIGKILL if "sigkill" in kind else signal.SIGTERM
            pids = self.signal_job(job, signum, group)
            return self.record(kind, job=job.index, job_kind=job.kind, pids=pids)
        if self.daemon_op is not None or (self.stopped_pid is not None and kind != "daemon-sigkill"):
            return self.record(kind, skipped="daemon busy (stopping, starting or stopped)")
        pid = self.stopped_pid or self.daemon_pid()
        if pid is None:
            return self.record(kind, skipped="no daemon running")
        if kind == "daemon-sigstop":
            os.kill(pid, signal.SIGSTOP)
            self.stops.append([time.time(), float("inf")])
            self.stopped_pid, self.resume_at = pid, time.monotonic() + duration
            return self.record(kind, pid=pid, seconds=round(duration, 2))
        if kind == "daemon-sigkill":
            os.kill(pid, signal.SIGKILL)
            was_stopped, self.stopped_pid = self.stopped_pid is not None, None
            if was_stopped:
                self.stops[-1][1] = time.time()
            return self.record(kind, pid=pid, while_stopped=was_stopped)
        self.start_after_op = then_start
        self.daemon_op = subprocess.Popen([sys.executable, "-m", "trackd", "daemon", "stop", "--timeout", "60"],
                                          env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.record(kind, pid=pid, then="daemon start" if self.start_after_op else "autostart")

    def tend_daemon(self) -> None:
        if self.stopped_pid is not None and time.monotonic() >= self.resume_at:
            os.kill(self.stopped_pid, signal.SIGCONT)
            self.stopped_pid = None
            self.stops[-1][1] = time.time()
        if self.daemon_op is not None and self.daemon_op.poll() is not None:
            if self.start_after_op:
                self.start_after_op = False
                self.daemon_op = subprocess.Popen([sys.executable, "-m", "trackd", "daemon", "start"], env=self.env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                self.daemon_op = None

    def run(self, seconds: float, slots: int, fault_interval: float) -> None:
        next_fault = 2.0 + self.fault_rng.expovariate(1 / fault_interval)
        index, tick = 0, time.monotonic()
        while self.elapsed() < seconds:
            self.longest_tick, tick = max(self.longest_tick, time.monotonic() - tick), time.monotonic()
            self.reap()
            while sum(j.ended is None for j in self.jobs) < slots and self.elapsed() < seconds - 2:
                self.start_job(index, self.rng.uniform(2.0, min(10.0, max(2.0, seconds - self.elapsed()))))
                index += 1
            self.tend_daemon()
            if self.elapsed() >= next_fault:
                self.inject()
                next_fault += self.fault_rng.expovariate(1 / fault_interval)
            time.sleep(0.1)

    def drain(self) -> dict[str, Any]:
        """Resume everything, wait for the jobs, sync, wait until idle and no run RUNNING, stop the daemon."""
        if self.stopped_pid is not None:
            self.resume_at = 0.0
        while self.daemon_op is not None or self.stopped_pid is not None:
            self.tend_daemon()
            time.sleep(0.1)
        while any(j.ended is None for j in self.jobs):
            self.reap()
            time.sleep(0.2)
        report: dict[str, Any] = {"jobs_done_s": round(self.elapsed(), 1)}
        report["daemon_start"] = self.cli("daemon", "start").stdout.strip()
        sync = self.cli("sync", "--timeout", "60", timeout=300)
        report["sync"] = {"rc": sync.returncode, "out": (sync.stdout + sync.stderr).strip()[-2000:]}
        deadline, status = time.monotonic() + 60, dict[str, Any]()
        while time.monotonic() < deadline:
            result = self.cli("daemon", "status", "--json")
            status = json.loads(result.stdout) if result.returncode == 0 and result.stdout.startswith("{") else {}
            busy = [k for k in ("backlog_records", "wills_pending", "wills_waiting", "clients_connected",
                                "copies_in_progress") if status.get(k)]
            if status and not busy and not status["spool"]["waiting"]["files"] and not running_runs(self.store):
                break
            time.sleep(0.5)
        report["idle_after_s"] = round(self.elapsed(), 1)
        report["status"] = {k: v for k, v in status.items() if k not in ("clients", "copies")}
        report["running_left"] = running_runs(self.store)
        report["stop"] = self.cli("daemon", "stop", "--timeout", "60").stdout.strip()
        return report

    @property
    def store(self) -> Path:
        return self.root / "mlruns"


def running_runs(store: Path) -> list[str]:
    """Run ids whose meta.yaml says RUNNING (status 1), read without MLflow."""
    found = []
    for meta in store.glob("*/*/meta.yaml"):
        try:
            if "\nstatus: 1\n" in "\n" + meta.read_text():
                found.append(meta.parent.name)
        except OSError:
            pass
    return found


# -- checking -------------------------------------------------------------------------------------


def value(key: str, step: int) -> float:
    return step + (zlib.crc32(key.encode()) % 1000) / 1000.0


def read_ledgers(folder: Path) -> dict[str, dict[int, list[str]]]:
    """run id -> pid -> ledger lines."""
    ledgers: dict[str, dict[int, list[str]]] = defaultdict(dict)
    for path in folder.iterdir():
        run_id, _, pid = path.name.partition(".")
        if pid.isdigit():
            ledgers[run_id][int(pid)] = path.read_text().splitlines()
    return ledgers


def read_metric_files(store: Path) -> tuple[dict[tuple[str, str, int], list[float]], list[str]]:
    """(run, key, step) -> values, from every metric file line; and the malformed lines."""
    points: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    bad: list[str] = []
    for metrics in store.glob("*/*/metrics"):
        run_id = metrics.parent.name
        for path in metrics.rglob("*"):
            if not path.is_file():
                continue
            key = path.relative_to(metrics).as_posix()
            text = path.read_text()
            if text and not text.endswith("\n"):
                bad.append(f"{path}: no newline at the end (a partial line)")
            for number, line in enumerate(text.splitlines(), 1):
                fields = line.split()
                try:
                    step = int(fields[2]) if len(fields) == 3 else 0
                    if len(fields) not in (2, 3):
                        raise ValueError
                    points[(run_id, key, step)].append(float(fields[1]))
                except (ValueError, IndexError):
                    bad.append(f"{path}:{number}: {line!r}")
    return points, bad


def read_with_mlflow(store: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every run's status, params and metric histories as MLflow reads them; and what it could not read."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(store))
    runs: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    try:
        experiments = client.search_experiments(view_type=ViewType.ALL)
    except Exception as exc:  # the store is unreadable: that is the finding
        return runs, [f"search_experiments: {exc!r}"]
    for experiment in experiments:
        token = None
        while True:
            try:
                page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                                          page_token=token)
            except Exception as exc:
                errors.append(f"search_runs({experiment.experiment_id}): {exc!r}")
                break
            for run in page:
                entry: dict[str, Any] = {"status": run.info.status, "params": dict(run.data.params), "history": {}}
                for key in run.data.metrics:
                    try:
                        entry["history"][key] = len(client.get_metric_history(run.info.run_id, key))
                    except Exception as exc:
                        errors.append(f"get_metric_history({run.info.run_id}, {key}): {exc!r}")
                runs[run.info.run_id] = entry
            token = page.token
            if not token:
                break
    return runs, errors


def allowed_statuses(fate: set[str], notes: set[str]) -> set[str]:
    """The statuses a run may end with, given its owner's signals and its last ledger notes."""
    if "SIGKILL" in fate:
        allowed = {"FAILED"} | ({"KILLED"} if "SIGTERM" in fate else set())
    elif "SIGTERM" in fate:
        allowed = {"KILLED"} | ({"FAILED"} if "X" in notes else set())
    else:
        allowed = {"FAILED"} if "X" in notes else set()
    return allowed | ({"FINISHED"} if "E" in notes else set())


def check(soak: Soak) -> dict[str, Any]:
    ledgers = read_ledgers(soak.root / "ledger")
    points, malformed = read_metric_files(soak.store)
    mlflow_runs, unreadable = read_with_mlflow(soak.store)
    counts: Counter[str] = Counter()
    problems: list[str] = []
    status_mismatch: list[str] = []
    accepted_keys: set[tuple[str, str, int]] = set()
    for run_id, by_pid in sorted(ledgers.items()):
        run = mlflow_runs.get(run_id)
        for pid, lines in by_pid.items():
            fate = soak.fates.get(pid, set())
            killed = "SIGKILL" in fate
            exited = next((line for line in lines if line.startswith("X ")), None)
            # os._exit after a flush that left events pending: those are as a SIGKILL's.
            weak = killed or (exited is not None and exited != "X 0")
            # A process sends in order: SIGKILL may lose the tail of each key, never a point before one that is there.
            last_found: dict[str, int] = {}
            for line in lines:
                if line.startswith("M "):
                    _, key, step_text = line.split()
                    if (run_id, key, int(step_text)) in points:
                        last_found[key] = max(last_found.get(key, -1), int(step_text))
            for line in lines:
                kind, *rest = line.split()
                if kind == "M":
                    key, step = rest[0], int(rest[1])
                    accepted_keys.add((run_id, key, step))
                    counts["accepted"] += 1
                    found = points.get((run_id, key, step), [])
                    if found:
                        counts["found"] += 1
                        if any(abs(v - value(key, step)) > 1e-9 for v in found):
                            counts["wrong_value"] += 1
                            problems.append(f"wrong value {run_id} {key} step {step}: {found}")
                    elif weak and step > last_found.get(key, -1):
                        counts["missing_after_sigkill"] += 1
                    else:
                        counts["missing"] += 1
                        if counts["missing"] <= 20:
                            # (a SIGKILLed process's only when a later step of the key is there: a hole, not a lost tail)
                            problems.append(f"missing {run_id} {key} step {step} (pid {pid}, fate {sorted(fate) or 'none'}, "
                                            f"last step of the key in the store {last_found.get(key)})")
                elif kind == "P":
                    counts["params_accepted"] += 1
                    if run is None or run["params"].get(rest[0]) != f"{rest[0]}-{run_id[:8]}":
                        if not weak:
                            counts["params_missing"] += 1
                            problems.append(f"param {rest[0]} of {run_id} (pid {pid}): {run and run['params'].get(rest[0])}")
            if lines and lines[0].startswith("S 1"):  # the owner: the run's status follows its fate
                notes = {line.split()[0] for line in lines if line[:1] in "EX"}
                allowed = allowed_statuses(fate, notes)
                actual = run["status"] if run else "absent"
                started = float(lines[0].split()[2])
                if run is None and any(a <= started and soak.killed_at.get(pid, b) < b for a, b in soak.stops):
                    # Started and SIGKILLed while the daemon was stopped: the client sends only its Hello
                    # and OwnedRuns before the Welcome, so the run's creation and points die with it.
                    actual = "absent: owner started and SIGKILLed within a daemon stop"
                    allowed.add(actual)
                elif run is None and soak.killed_at.get(pid, float("inf")) - started <= KILL_WINDOW:
                    # SIGKILLed within the send window of its start: before its sender thread had
                    # connected or written the run's creation (docs/guarantees.md rows 3 and 3a-3).
                    actual = "absent: owner SIGKILLed within the send window of its start"
                    allowed.add(actual)
                counts[f"runs_{actual}"] += 1
                if actual not in allowed:
                    status_mismatch.append(f"{run_id} {actual}, expected {'/'.join(sorted(allowed)) or '? (no E)'}"
                                           f" (owner pid {pid}, fate {sorted(fate) or 'none'}, notes {sorted(notes)}"
                                           f"{_killed_after(soak, pid, started)})")
    for (run_id, key, step), values in points.items():
        counts["points_in_store"] += len(values)
        if len(values) > 1:
            counts["duplicated"] += len(values) - 1
            if counts["duplicated"] <= 20:
                problems.append(f"duplicated {run_id} {key} step {step}: {len(values)} lines {values}")
        if (run_id, key, step) not in accepted_keys:
            counts["not_in_ledger"] += 1  # accepted as a signal came, before the ledger line
    in_files: Counter[str] = Counter()
    for (run_id, _, _), values in points.items():
        in_files[run_id] += len(values)
    for run_id, run in mlflow_runs.items():
        if sum(run["history"].values()) != in_files[run_id]:
            unreadable.append(f"{run_id}: MLflow read {sum(run['history'].values())} points, the files hold {in_files[run_id]}")
        if run_id not in ledgers:
            counts[f"runs_no_ledger_{run['status']}"] += 1
            if run["status"] not in TERMINAL:
                status_mismatch.append(f"{run_id} {run['status']} with no ledger")
    counts["runs_in_store"] = len(mlflow_runs)
    return {"counts": dict(counts), "problems": problems, "status_mismatch": status_mismatch,
            "malformed_lines": malformed[:50], "unreadable": unreadable[:50]}


def _killed_after(soak: Soak, pid: int, started: float) -> str:
    """", SIGKILLed N s after its start" for a mismatch's line, when it was."""
    killed = soak.killed_at.get(pid)
    return "" if killed is None else f", SIGKILLed {killed - started:.3f} s after its start"


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.set_defaults(seed=1)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long jobs are started and faults injected")
    parser.add_argument("--jobs", type=int, default=5, help="jobs running at once")
    parser.add_argument("--fault-interval", type=float, default=2.5, help="mean seconds between faults")
    parser.add_argument("--keep", action="store_true", help="keep the folder (store, ledgers, logs) and print its path")
    args = parser.parse_args()
    root = C.temp_dir("tdc-")
    for sub in ("ledger", "logs", "spool", "d"):
        (root / sub).mkdir()
    (root / "job.py").write_text(JOB)
    env = C.mlflow_env(root / "mlruns", TRACKD_SOCKET=str(root / "d" / "d.sock"), TRACKD_TRACKING_URI=str(root / "mlruns"),
                       TRACKD_SPOOL_DIR=str(root / "spool"), TRACKD_AUTOSTART="1")
    env.pop("MLFLOW_TRACKING_URI")
    C.STARTED_SOCKETS.append(env["TRACKD_SOCKET"])
    soak = Soak(root, env, random.Random(args.seed), random.Random(args.seed + 1_000_003))
    try:
        soak.run(args.seconds, args.jobs, args.fault_interval)
        drain = soak.drain()
        result = check(soak)
    finally:
        for job in soak.jobs:  # anything left after a crash of this script
            if job.ended is None:
                soak.signal_job(job, signal.SIGKILL, True)
        if soak.stopped_pid is not None:
            os.kill(soak.stopped_pid, signal.SIGCONT)
        if soak.daemon_pid() is not None:
            soak.cli("daemon", "stop", "--timeout", "30")
    counts = result["counts"]
    faults = Counter(f["kind"] + (" (skipped)" if "skipped" in f else "") for f in soak.faults)
    kinds = Counter(j.kind for j in soak.jobs)
    print(f"chaos soak: {args.seconds:.0f} s, seed {args.seed}, {args.jobs} jobs at once, a fault every "
          f"~{args.fault_interval} s; jobs done at {drain['jobs_done_s']} s, idle at {drain['idle_after_s']} s; "
          f"longest pause of this script's loop {soak.longest_tick:.2f} s")
    C.print_table(["what", "count"], [
        ["jobs", f"{len(soak.jobs)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"],
        ["processes signalled", len(soak.fates)],
        *[[f"fault {k}", n] for k, n in sorted(faults.items())],
        ["points accepted", counts.get("accepted", 0)],
        ["  found", counts.get("found", 0)],
        ["  missing", counts.get("missing", 0)],
        ["  missing, SIGKILLed process (allowed)", counts.get("missing_after_sigkill", 0)],
        ["  wrong value", counts.get("wrong_value", 0)],
        ["points in store", counts.get("points_in_store", 0)],
        ["  duplicated", counts.get("duplicated", 0)],
        ["  not in a ledger (accepted as a signal came)", counts.get("not_in_ledger", 0)],
        ["params accepted / missing", f"{counts.get('params_accepted', 0)} / {counts.get('params_missing', 0)}"],
        ["malformed metric lines", len(result["malformed_lines"])],
        ["unreadable by MLflow", len(result["unreadable"])],
        ["runs in store", counts.get("runs_in_store", 0)],
        ["runs by status (an owner's ledger, or none)", ""],
        *[[f"  {k.removeprefix('runs_')}", n] for k, n in sorted(counts.items()) if k.startswith("runs_") and k != "runs_in_store"],
        ["status not fitting its fate", len(result["status_mismatch"])],
        ["hung jobs", sum(j.hung for j in soak.jobs)],
        ["trackd sync exit code", drain["sync"]["rc"]],
    ])
    failed = bool(counts.get("missing") or counts.get("duplicated") or counts.get("wrong_value")
                  or counts.get("params_missing") or result["malformed_lines"] or result["unreadable"]
                  or result["status_mismatch"] or any(j.hung for j in soak.jobs) or drain["running_left"])
    if failed:
        print("\nFAILED:", *result["problems"][:30], *result["status_mismatch"][:30], *result["malformed_lines"][:10],
              *result["unreadable"][:10], *(f"RUNNING at the end: {r}" for r in drain["running_left"]),
              sep="\n  ")
        print("fault sequence (t s from start):", *(json.dumps(f) for f in soak.faults), sep="\n  ")
    jobs = [{"index": j.index, "kind": j.kind, "run_id": j.run_id, "seconds": round(j.seconds, 2),
             "started": round(j.started, 2), "ended": j.ended and round(j.ended, 2), "hung": j.hung,
             "returncode": j.process.returncode} for j in soak.jobs]
    C.write_json(args.json, vars(args), {"ok": not failed, "longest_tick_s": soak.longest_tick, **result, "drain": drain, "faults": soak.faults, "jobs": jobs,
                                         "fates": {str(p): sorted(s) for p, s in soak.fates.items()}})
    if args.keep or failed:
        print(f"\nkept {root} (store mlruns/, ledgers ledger/<run>.<pid>, job stderr logs/, daemon log d/d.sock.log)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
