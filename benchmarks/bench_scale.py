"""Does durable throughput hold, and do the daemon's open files and memory stay bounded, as the
number of distinct metric files (runs x keys) grows from 10 to 100,000?

For each size a fresh daemon (its own process, short socket under /tmp, temporary store,
started with ``--max-open-files``) serves one producer process that creates the runs (flushed
first, not timed), then logs ``--points`` points round-robin over every (run, key) file with
``Client.log_metric`` and calls ``flush()``. Before that (unless ``--no-precreate``) one point to
every file, flushed and timed apart ("create files s"), creates the files: on this machine a
file creation costs the kernel far more than an append, and it happens once per file. Durable points/s is the span from the first call
to the return of ``flush()``. While it runs, this process samples the daemon every 20 ms:
open fds (``/proc/<pid>/fd``) and RSS (``/proc/<pid>/status`` VmRSS); the table shows the peak
of each and the throughput relative to the 10-file case of the same invocation (the baseline).

The floor: after each case, this process appends one line to every metric file of its store in
a bare Python loop ("bare append to every file s"): ``os.write`` alone to files opened beforehand
when the file limit (raised to its hard limit) holds them all, else ``os.open``, ``os.write`` and
``os.close`` each. Whatever holds points back, a ``flush()`` must put each file's points in that
file, so this is the least any writer in Python pays for the files on top of the points. "ratio
bound" is the baseline's time for the case's points divided by that time plus the floor: the most
a writer could reach if it touched every file exactly once and did everything else at the
baseline's rate.

Default sizes are 10, 1,000 and 10,000 files so the script finishes in about a minute;
``--full`` adds the 100,000-file case (100,000 files are created on disk: allow a few minutes).

Run:  .venv/bin/python benchmarks/bench_scale.py [--points 200000] [--max-open-files N] [--full] [--json out.json]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

import _common as C

PRODUCER = r"""
import json, random, sys, time
import trackd
runs, keys, points, seed, precreate = (int(x) for x in sys.argv[1:6])
rng = random.Random(seed)
values = [rng.random() for _ in range(4096)]
client = trackd.Client()
run_ids = [client.create_run("0", run_name=f"scale-{r}").info.run_id for r in range(runs)]
names = [f"metric_{k}" for k in range(keys)]
client.flush()
files = [(run_id, name) for run_id in run_ids for name in names]
create_ns = 0
if precreate:
    # Step 0 to every file, flushed: file creation is timed apart from the steady state.
    c0 = time.monotonic_ns()
    for run_id, name in files:
        client.log_metric(run_id, name, 0.0, None, 0)
    client.flush()
    create_ns = time.monotonic_ns() - c0
print("ready", flush=True)
sys.stdin.readline()
log_metric = client.log_metric
n_files = len(files)
rounds = max(1, points // n_files)
t0 = time.monotonic_ns()
i = 0
for step in range(1, rounds + 1):
    for run_id, name in files:
        log_metric(run_id, name, values[i & 4095], None, step)
        i += 1
t1 = time.monotonic_ns()
client.flush()
t2 = time.monotonic_ns()
client.close()
print(json.dumps({"first_call_ns": t0, "last_call_ns": t1, "flushed_ns": t2, "points": i, "create_ns": create_ns}), flush=True)
"""


def bare_append_seconds(store: str) -> float:
    """Seconds a bare loop takes to append one line to every metric file under ``store``: write()
    alone when this process may hold them all open, else an open, a write and a close each."""
    paths = [os.path.join(folder, name) for folder, _, names in os.walk(store)
             if os.path.basename(folder) == "metrics" for name in names]
    flags, line = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, b"1764144000000 0.5 0\n"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft == resource.RLIM_INFINITY or len(paths) + 256 <= soft:
        fds = [os.open(path, flags) for path in paths]
        t0 = time.perf_counter()
        for fd in fds:
            os.write(fd, line)
        elapsed = time.perf_counter() - t0
        for fd in fds:
            os.close(fd)
        return elapsed
    t0 = time.perf_counter()
    for path in paths:
        fd = os.open(path, flags)
        os.write(fd, line)
        os.close(fd)
    return time.perf_counter() - t0


class Sampler(threading.Thread):
    """Peak open fds and RSS of a process, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop_event = threading.Event()
        self.peak_fds = 0
        self.peak_rss_kb = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak_fds = max(self.peak_fds, C.open_fds(self.pid))
            self.peak_rss_kb = max(self.peak_rss_kb, C.rss_kb(self.pid))
            self.samples += 1
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def shape(files: int) -> tuple[int, int]:
    """(runs, keys) for a number of metric files: up to 100 keys per run."""
    keys = min(files, 100) if files >= 100 else files
    return max(1, files // keys), keys


def one_case(files: int, points: int, max_open: int | None, seed: int, precreate: bool = True) -> dict[str, Any]:
    runs, keys = shape(files)
    # At least one point per file, so every file exists.
    points = max(points, runs * keys)
    # None: the daemon sizes its metric-file cache from its file limit, as it does by default.
    with C.Daemon(*(["--max-open-files", str(max_open)] if max_open is not None else [])) as daemon:
        fds_idle, rss_idle = C.open_fds(daemon.pid), C.rss_kb(daemon.pid)
        # Sampled from the producer's start, so file creation counts towards the peaks too.
        sampler = Sampler(daemon.pid)
        sampler.start()
        proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(runs), str(keys), str(points), str(seed), str(int(precreate))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=daemon.env())
        try:
            assert proc.stdin is not None and proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"producer did not start: {line!r}; daemon log: {daemon.read_log()}")
            cpu0 = C.cpu_seconds(daemon.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            report = json.loads(proc.stdout.readline())
            sampler.stop()
            cpu1 = C.cpu_seconds(daemon.pid)
            fds_end, rss_end = C.open_fds(daemon.pid), C.rss_kb(daemon.pid)
        finally:
            sampler.stop()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        floor_s = bare_append_seconds(str(daemon.store))
    span = (report["flushed_ns"] - report["first_call_ns"]) / 1e9
    return {
        "files": runs * keys, "runs": runs, "keys": keys, "points": report["points"], "max_open_files": max_open,
        "durable_span_s": span, "durable_points_per_s": report["points"] / span,
        "precreated": precreate, "create_s": report["create_ns"] / 1e9,
        "daemon_cpu_s": cpu1 - cpu0, "bare_append_s": floor_s,
        "fds_idle": fds_idle, "fds_peak": sampler.peak_fds, "fds_end": fds_end,
        "rss_idle_kb": rss_idle, "rss_peak_kb": sampler.peak_rss_kb, "rss_end_kb": rss_end,
        "samples": sampler.samples,
    }


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--sizes", default="10,1000,10000", help="comma-separated numbers of metric files")
    parser.add_argument("--full", action="store_true", help="also run 100,000 files")
    parser.add_argument("--points", type=int, default=200_000, help="points per case (at least one per file)")
    parser.add_argument("--max-open-files", type=int, default=None, help="the daemon's --max-open-files (default: the daemon's own default, sized from its file limit)")
    parser.add_argument("--no-precreate", action="store_true",
                        help="time the first point to each file too (file creation) instead of timing it apart")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per size (a fresh daemon and store each); medians")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.full and 100_000 not in sizes:
        sizes.append(100_000)

    results: list[dict[str, Any]] = []
    # Warm-up: a small case so imports and the page cache are warm.
    one_case(10, 10_000, args.max_open_files, args.seed)
    for files in sizes:
        for repeat in range(args.repeats):
            t0 = time.perf_counter()
            r = one_case(files, args.points, args.max_open_files, args.seed + repeat, not args.no_precreate)
            r["repeat"] = repeat
            results.append(r)
            print(f"  {r['files']:>7,} files: {r['durable_points_per_s']:>10,.0f} points/s, peak fds {r['fds_peak']}, "
                  f"peak RSS {r['rss_peak_kb'] / 1024:.1f} MB ({time.perf_counter() - t0:.1f} s)", flush=True)

    rows = []
    summary = []
    base = None
    for files in sizes:
        rs = [r for r in results if r["files"] == shape(files)[0] * shape(files)[1]]
        pps = C.median(r["durable_points_per_s"] for r in rs)
        base = base or pps
        s = {
            "files": rs[0]["files"], "runs": rs[0]["runs"], "keys": rs[0]["keys"], "points": rs[0]["points"],
            "durable_points_per_s": pps, "ratio_to_first": pps / base,
            "fds_peak": max(r["fds_peak"] for r in rs), "rss_peak_mb": max(r["rss_peak_kb"] for r in rs) / 1024,
            "daemon_cpu_s_per_million": C.median(r["daemon_cpu_s"] / r["points"] * 1e6 for r in rs),
            "create_s": C.median(r["create_s"] for r in rs),
            "bare_append_s": C.median(r["bare_append_s"] for r in rs),
        }
        # The baseline's time for this case's points, plus touching every file once at the floor.
        base_span = s["points"] / base
        s["ratio_bound"] = base_span / (base_span + s["bare_append_s"])
        summary.append(s)
        rows.append([f"{s['files']:,}", f"{s['runs']:,} x {s['keys']}", C.num(s["points"]), C.num(pps),
                     f"{s['ratio_to_first']:.2f}x", args.max_open_files or "auto", s["fds_peak"], f"{s['rss_peak_mb']:.1f}",
                     f"{s['daemon_cpu_s_per_million']:.2f}", f"{s['create_s']:.2f}" if not args.no_precreate else "-",
                     f"{s['bare_append_s']:.3f}", f"{s['ratio_bound']:.2f}x"])
    print()
    C.print_table(
        ["metric files", "runs x keys", "points", "durable pts/s", f"vs {sizes[0]:,} files", "--max-open-files",
         "peak daemon fds", "peak daemon RSS MB", "daemon CPU s / 1M pts", "create files s",
         "bare append to every file s", "ratio bound"],
        rows,
        title=f"scale: one producer, points round-robin over every file, {args.repeats} round(s) per size; "
        + ("timed after one point per file created them ('create files s', untimed in pts/s)" if not args.no_precreate
           else "file creation included in the timed part"),
    )
    C.write_json(args.json, vars(args), {"summary": summary, "rounds": results}, loop="daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
