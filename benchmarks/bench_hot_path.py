"""How long does a logging call take in the training thread, and does it stay that fast while the
daemon is stopped?

Measures the per-call latency of ``trackd.log_metric``, ``trackd.log_metrics`` (10 keys),
``trackd.log_param`` (a new key each call) and ``trackd.set_tag`` (p50, p99, p99.9, max), each
call timed alone with ``time.perf_counter_ns()``, in two phases:

* ``running``: the daemon (its own process, short socket under /tmp, temporary store) is up, so
  the sender thread packs and sends while the caller logs;
* ``stopped``: the daemon is SIGSTOPped, so nothing is acknowledged and the buffer only grows
  (TRACKD_MAX_BUFFERED is set larger than everything this phase logs, so this is the
  non-blocking path; the table says whether the buffer ever filled). SIGCONT follows, then a
  flush, before the daemon is stopped.

The floor, in the same run: a bare ``deque.append`` of the same 6-tuple (and the same with the
``time.time_ns()`` timestamp the real call takes), timed the same way; the ratio column divides
each p50 by the floor's p50. The timer's own cost (an empty ``perf_counter_ns`` pair) is
included in every per-call sample and shown as its own row; ``mean/call`` times a whole loop
with one timer pair, so it is free of that cost.

Run:  .venv/bin/python benchmarks/bench_hot_path.py [--calls 10000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import collections
import gc
import os
import random
import sys
import time
from typing import Any, Callable

import _common as C


def measure(fn: Callable[[int], Any], calls: int, offset: int) -> list[int]:
    """Time ``fn(i)`` for ``calls`` values of i, one timer pair per call."""
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        t0 = clock()
        fn(offset + i)
        samples[i] = clock() - t0
    return samples


def measure_loop(fn: Callable[[int], Any], calls: int, offset: int) -> float:
    """Mean ns per call of a loop timed as a whole (no per-call timer cost)."""
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(offset, offset + calls):
        fn(i)
    return (clock() - t0) / calls


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=10_000, help="timed calls per operation per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per operation and phase")
    parser.add_argument("--slow-calls", type=int, default=2_000, help="timed calls per repeat for log_param and set_tag (each one is a file write in the daemon)")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed calls per operation before the first repeat")
    parser.add_argument("--loop", default=None, choices=["uvloop", "asyncio"], help="daemon event loop (default: the daemon's choice)")
    parser.add_argument("--phases", default="running,stopped", help="comma-separated: running, stopped")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    phases = [p for p in args.phases.split(",") if p]

    # Everything the stopped phase logs must fit, so that phase measures the non-blocking path.
    per_phase_events = (args.warmup + 2 * args.calls * args.repeats) * (1 + 10 + 1 + 1)
    max_buffered = per_phase_events * 2 + 100_000

    daemon = C.Daemon(loop=args.loop).start()
    results: dict[str, Any] = {"phases": {}, "max_buffered": max_buffered}
    rows: list[list[str]] = []
    try:
        daemon.apply_env(TRACKD_MAX_BUFFERED=str(max_buffered), TRACKD_ON_FULL="block")
        import trackd
        import trackd.client

        values = [rng.random() for _ in range(4096)]
        keys10 = [f"metric_{j}" for j in range(10)]
        run = trackd.start_run(run_name="bench-hot-path")
        run_id = run.info.run_id
        client = trackd.client.get_client()
        sender = client._sender
        timer = C.timer_overhead_ns()

        # The floor: the same tuple appended to a bare deque (what the buffer is).
        floor_buffer: collections.deque[tuple[Any, ...]] = collections.deque()
        floor_append = floor_buffer.append
        ts = time.time_ns() // 1_000_000
        time_ns = time.time_ns

        def floor(i: int) -> None:
            floor_append((1, run_id, "loss", values[i & 4095], ts, i))

        def floor_ts(i: int) -> None:
            floor_append((1, run_id, "loss", values[i & 4095], time_ns() // 1_000_000, i))

        log_metric, log_metrics, log_param, set_tag = trackd.log_metric, trackd.log_metrics, trackd.log_param, trackd.set_tag
        phase_name = ["running"]

        def op_log_metric(i: int) -> None:
            log_metric("loss", values[i & 4095], step=i)

        def op_log_metrics(i: int) -> None:
            v = values[i & 4095]
            log_metrics({k: v for k in keys10}, step=i)

        def op_log_param(i: int) -> None:
            log_param(f"p_{phase_name[0]}_{i}", i)

        def op_set_tag(i: int) -> None:
            set_tag("status", i)

        fast, slow = args.calls, args.slow_calls
        operations: list[tuple[str, Callable[[int], Any], int, int]] = [
            ("floor: deque.append(tuple)", floor, 1, fast),
            ("floor + time_ns() timestamp", floor_ts, 1, fast),
            ("log_metric", op_log_metric, 1, fast),
            ("log_metrics (10 keys)", op_log_metrics, 10, fast),
            ("log_param (new key)", op_log_param, 1, slow),
            ("set_tag", op_set_tag, 1, slow),
        ]
        trackd.flush()

        for phase in phases:
            phase_name[0] = phase
            if phase == "stopped":
                daemon.suspend()
                time.sleep(0.05)
            buffered_at_start = len(sender.buffer)
            phase_results: dict[str, Any] = {}
            offset = 0
            for name, fn, points, calls in operations:
                warmup = min(args.warmup, calls)
                measure(fn, warmup, offset)
                offset += warmup
                samples: list[int] = []
                per_repeat_p50: list[float] = []
                loop_means: list[float] = []
                for _ in range(args.repeats):
                    chunk = measure(fn, calls, offset)
                    offset += calls
                    samples += chunk
                    per_repeat_p50.append(C.summarize_ns(chunk)["p50"])
                    loop_means.append(measure_loop(fn, min(calls, 5_000), offset))
                    offset += min(calls, 5_000)
                floor_buffer.clear()
                stats = C.summarize_ns(samples)
                stats["mean_loop_ns"] = C.median(loop_means)
                stats["per_repeat_p50"] = per_repeat_p50
                stats["points_per_call"] = points
                stats["raw_sample_every_10th"] = samples[::10]
                phase_results[name] = stats
            stats_now = client.stats()
            peak = len(sender.buffer)
            phase_results["_buffer"] = {
                "buffered_at_start": buffered_at_start,
                "buffered_at_end": peak,
                "max_buffered": max_buffered,
                "filled": bool(sender._warned_full) or peak >= max_buffered,
                "dropped": stats_now["dropped"],
            }
            if phase == "stopped":
                daemon.resume()
            t0 = time.perf_counter_ns()
            trackd.flush()
            phase_results["_flush_after_phase_s"] = (time.perf_counter_ns() - t0) / 1e9
            results["phases"][phase] = phase_results

        trackd.end_run()
        # Close the client while the daemon still answers, so interpreter exit has nothing to deliver.
        client.close()
        results["timer_overhead"] = timer
        results["gc_enabled"] = gc.isenabled()

        floor_p50 = None
        for phase in phases:
            pr = results["phases"][phase]
            floor_p50 = pr["floor: deque.append(tuple)"]["p50"]
            for name, _, _, _ in operations:
                st = pr[name]
                rows.append([
                    phase, name, C.us(st["p50"]), C.us(st["p99"]), C.us(st["p999"]), C.us(st["max"]),
                    C.us(st["mean_loop_ns"]), f"{st['p50'] / floor_p50:.1f}x",
                ])
        rows.append(["-", "timer: empty perf_counter_ns pair", C.us(timer["p50"]), C.us(timer["p99"]),
                     C.us(timer["p999"]), C.us(timer["max"]), "-", "-"])
        print()
        C.print_table(
            ["phase", "operation", "p50 us", "p99 us", "p99.9 us", "max us", "mean/call us", "p50 / floor"],
            rows,
            title=f"trackd hot path: {args.calls} calls ({args.slow_calls} for log_param/set_tag) x {args.repeats} repeats "
            f"per operation and phase (per-call samples include the timer row; log_metrics is one call of 10 points)",
        )
        for phase in phases:
            b = results["phases"][phase]["_buffer"]
            print(f"{phase}: buffer {b['buffered_at_start']} -> {b['buffered_at_end']} events of max {max_buffered}; "
                  f"filled: {'YES' if b['filled'] else 'no'}; dropped {b['dropped']}; "
                  f"flush after phase {results['phases'][phase]['_flush_after_phase_s']:.2f} s")
    finally:
        daemon.stop()

    C.write_json(args.json, vars(args), results, loop=args.loop or "daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
