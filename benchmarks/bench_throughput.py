"""How many metric points per second reach the store durably, from 1, 4 and 16 producer processes,
and how much daemon CPU does a million points cost, with uvloop and with stock asyncio?

Each producer is its own process that starts its own run, flushes (so the run exists), says it
is ready and waits; then all start together and log ``--points / producers`` points as steps of
10 metric keys (``trackd.log_metric``), then call ``trackd.flush()``. Durable points/s is all
points divided by the span from the earliest first call to the latest return of ``flush()``
(``time.monotonic_ns()``, the same clock in every process on Linux). Daemon CPU is utime+stime
from ``/proc/<pid>/stat`` read just before "go" and after the last flush returned.

Both loops run in the same invocation: a daemon started with ``--loop uvloop`` and one with
``--loop asyncio`` (each its own process, short socket path under /tmp, temporary store), for
every producer count, ``--repeats`` times; the table shows medians.

Run:  .venv/bin/python benchmarks/bench_throughput.py [--points 300000] [--producers 1,4,16] [--json out.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import _common as C

PRODUCER = r"""
import json, random, sys, time
import trackd
points, keys, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
values = [rng.random() for _ in range(4096)]
names = [f"metric_{k}" for k in range(keys)]
run = trackd.start_run(run_name=f"producer-{seed}")
trackd.log_metric("warmup", 0.0, step=0)
trackd.flush()
print("ready", flush=True)
sys.stdin.readline()
log_metric = trackd.log_metric
steps = points // keys
t0 = time.monotonic_ns()
for step in range(steps):
    v = values[step & 4095]
    for name in names:
        log_metric(name, v, step=step)
t1 = time.monotonic_ns()
trackd.flush()
t2 = time.monotonic_ns()
trackd.end_run()
print(json.dumps({"first_call_ns": t0, "last_call_ns": t1, "flushed_ns": t2, "points": steps * keys}), flush=True)
"""


def one_round(daemon: C.Daemon, producers: int, points: int, keys: int, seed: int) -> dict[str, Any]:
    per_producer = max(keys, points // producers)
    env = daemon.env()
    procs = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, str(per_producer), str(keys), str(seed + i)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for i in range(producers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"producer did not start: {line!r} (daemon log: {daemon.read_log()})")
        cpu0 = C.cpu_seconds(daemon.pid)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            assert p.stdout is not None
            reports.append(json.loads(p.stdout.readline()))
        cpu1 = C.cpu_seconds(daemon.pid)
    finally:
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    total = sum(r["points"] for r in reports)
    span_ns = max(r["flushed_ns"] for r in reports) - min(r["first_call_ns"] for r in reports)
    log_span_ns = max(r["last_call_ns"] for r in reports) - min(r["first_call_ns"] for r in reports)
    return {
        "producers": producers,
        "points": total,
        "durable_span_s": span_ns / 1e9,
        "durable_points_per_s": total / (span_ns / 1e9),
        "logging_points_per_s": total / (log_span_ns / 1e9),
        "daemon_cpu_s": cpu1 - cpu0,
        "daemon_cpu_s_per_million": (cpu1 - cpu0) / total * 1e6,
        "producer_reports": reports,
    }


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--points", type=int, default=300_000, help="points per round, split evenly among the producers")
    parser.add_argument("--producers", default="1,4,16", help="comma-separated producer counts")
    parser.add_argument("--keys", type=int, default=10, help="metric keys per step")
    parser.add_argument("--loops", default="uvloop,asyncio", help="daemon event loops to compare")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per (loop, producers); the table shows medians")
    args = parser.parse_args()
    counts = [int(x) for x in args.producers.split(",") if x]
    loops = [x for x in args.loops.split(",") if x]

    results: list[dict[str, Any]] = []
    for loop in loops:
        with C.Daemon(loop=loop) as daemon:
            # Warm-up: one small round so imports, page cache and the store's experiment exist.
            one_round(daemon, 1, max(args.keys * 100, args.points // 20), args.keys, args.seed)
            for count in counts:
                for repeat in range(args.repeats):
                    r = one_round(daemon, count, args.points, args.keys, args.seed + 1000 * repeat)
                    r.update(loop=loop, repeat=repeat)
                    results.append(r)
                    print(f"  {loop:8s} producers={count:<3d} repeat={repeat}  {r['durable_points_per_s']:>12,.0f} points/s  "
                          f"daemon {r['daemon_cpu_s_per_million']:.2f} CPU s per million", flush=True)

    rows = []
    summary = []
    base: dict[int, float] = {}
    for loop in loops:
        for count in counts:
            rs = [r for r in results if r["loop"] == loop and r["producers"] == count]
            pps = C.median(r["durable_points_per_s"] for r in rs)
            lps = C.median(r["logging_points_per_s"] for r in rs)
            cpu = C.median(r["daemon_cpu_s_per_million"] for r in rs)
            if loop == loops[0]:
                base[count] = pps
            summary.append({"loop": loop, "producers": count, "median_durable_points_per_s": pps,
                            "median_logging_points_per_s": lps, "median_daemon_cpu_s_per_million": cpu})
            rows.append([loop, count, C.num(rs[0]["points"]), C.num(pps), f"{min(r['durable_points_per_s'] for r in rs):,.0f}-{max(r['durable_points_per_s'] for r in rs):,.0f}",
                         C.num(lps), f"{cpu:.2f}", f"{pps / base[count]:.2f}x"])
    print()
    C.print_table(
        ["loop", "producers", "points", "durable pts/s (median)", "range", "log-call pts/s", "daemon CPU s / 1M pts", f"vs {loops[0]}"],
        rows,
        title=f"durable throughput: {args.keys} keys per step, {args.repeats} rounds each, os.cpu_count()={C.environment()['cpu_count']}",
    )
    C.write_json(args.json, vars(args), {"summary": summary, "rounds": results}, loop=",".join(loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
