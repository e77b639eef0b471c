"""How often does Ctrl-C hang the exit of a program with a fork Pool, with trackd and without?

A chaos run saw a producer hang for ever after SIGINT to its process group: its main thread in
multiprocessing's exit (``_terminate_pool`` -> ``_help_stuff_finish``, acquiring the task queue's
lock) while trackd's sender thread polled its socket. This script asks whether that is trackd's.

Each run starts a program (its own process group) with a ``Pool(4, maxtasksperchild=1)`` of fork
workers and a main loop that submits tasks of 100 points, sends SIGINT to the whole group (as a
terminal's Ctrl-C does) at a random moment 0.05-1.5 s after the pool exists, and counts the run
as hung if it has not exited within ``--hang`` seconds (it is then SIGKILLed, after SIGUSR1 made
each process print its stacks with faulthandler, kept in ``--keep`` if given). Variants,
interleaved round-robin so machine noise hits each alike:

* ``trackd``: the main loop and the tasks log their points with trackd (a daemon already running
  in its own process), each task ends with ``trackd.flush()``;
* ``plain``: the same loops, no logging (``math.sqrt`` of each point);
* ``sleep``: ``plain``, with each task sleeping 10 ms where ``trackd`` flushes;
* ``trackd-ign`` and ``plain-ign``: workers that ignore SIGINT (``initializer=signal.signal``),
  leaving Ctrl-C to the parent, whose exit terminates them.

Run:  .venv/bin/python benchmarks/bench_pool_ctrl_c.py [-n 6] [--variants trackd,plain] [--hang 8] [--json out.json]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

VARIANTS = ("trackd", "plain", "sleep", "trackd-ign", "plain-ign")

PROGRAM = """
import faulthandler, math, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a program run from a terminal
faulthandler.register(signal.SIGUSR1, all_threads=True)
VARIANT = sys.argv[1]
TRACKD = VARIANT.startswith("trackd")
if TRACKD:
    import trackd
import multiprocessing as mp

def log(key, value):
    if TRACKD:
        trackd.log_metric(key, value, step=int(value))
    else:
        math.sqrt(value)

def task(start):
    for step in range(start, start + 100):
        log("pool", float(step))
    if TRACKD:
        trackd.flush(timeout=20)
    elif VARIANT.startswith("sleep"):
        time.sleep(0.01)
    return start

if TRACKD:
    trackd.start_run(run_name="pool")
ignore = VARIANT.endswith("-ign")
pool = mp.get_context("fork").Pool(
    4, maxtasksperchild=1, initializer=signal.signal if ignore else None,
    initargs=(signal.SIGINT, signal.SIG_IGN) if ignore else (),
)
print("READY", flush=True)
pending, i = [], 0
while True:
    for _ in range(200):
        log("main", float(i))
        i += 1
    if len(pending) < 4:
        pending.append(pool.apply_async(task, (i,)))
    pending = [r for r in pending if not r.ready()]
    time.sleep(0.005)
"""


def run_once(variant: str, env: dict[str, str], rng: random.Random, hang: float, keep: Path | None, index: int) -> bool:
    """One interrupted run; True if it hung."""
    err = (keep / f"{variant}-{index}.err").open("w") if keep else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, variant], env=env, stdout=subprocess.PIPE, stderr=err,
            text=True, start_new_session=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # READY: the pool exists
        time.sleep(rng.uniform(0.05, 1.5))
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(hang)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGUSR1)  # every process's stacks, into the kept stderr
            time.sleep(1.0)
            return True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the hung run, or workers left behind
            except ProcessLookupError:
                pass
            proc.wait()
            proc.stdout.close()
    finally:
        if keep:
            err.close()


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("-n", type=int, default=6, help="interrupted runs per variant")
    parser.add_argument("--variants", default="trackd,plain", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--hang", type=float, default=8.0, help="seconds after SIGINT that count a run as hung")
    parser.add_argument("--keep", metavar="DIR", help="keep each run's stderr (tracebacks, stacks of hung runs) here")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {', '.join(VARIANTS)}")
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    hung: dict[str, list[bool]] = {v: [] for v in variants}
    with C.Daemon() as daemon:
        env = C.mlflow_env(daemon.store, TRACKD_SOCKET=str(daemon.socket), TRACKD_TRACKING_URI=str(daemon.store),
                           TRACKD_AUTOSTART="0")
        for index in range(args.n):
            for variant in variants:
                hung[variant].append(run_once(variant, env, rng, args.hang, keep, index))
    rows = [[v, len(h), sum(h), f"{100.0 * sum(h) / len(h):.0f}%"] for v, h in hung.items()]
    C.print_table(["variant", "runs", "hung", "rate"], rows, title="Ctrl-C to a fork Pool(4)'s process group")
    results: dict[str, Any] = {v: {"runs": len(h), "hung": sum(h), "per_run": h} for v, h in hung.items()}
    C.write_json(args.json, vars(args), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
