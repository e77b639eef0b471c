"""What does the training-loop workload (10 metric keys per step) cost with trackd, and with the
loggers a user would otherwise pick?

Per peer: the cost of one logging call (p50 and p99, each call timed alone with
``time.perf_counter_ns()``) and points per second from the first call until the data is
durable (trackd: ``flush()``; mlflow sync: the last call; mlflow async:
``mlflow.flush_async_logging()``; ``MlflowClient.log_batch``: the last call; tensorboardX:
``close()``; wandb offline: ``finish()``). Each peer runs in its own subprocess (this script with
``--worker``), so one library's imports and threads don't touch another's: ``--repeats`` rounds
with every call timed (the latency columns) alternating with as many rounds without per-call
clocks (throughput and the loop's cost per point: two clock reads cost more than trackd's call),
each in a fresh run after a warm-up; the table shows medians and the ratio to trackd.

Peers:
* trackd ``log_metric`` (one call per point), and ``log_metrics`` of 10 keys (one call per step),
  through a daemon in its own process on a short socket under /tmp with a temporary store;
* mlflow file store (``file://`` temp dir, MLFLOW_ALLOW_FILE_STORE=true,
  MLFLOW_DISABLE_TELEMETRY=true): ``log_metric`` (synchronous), ``log_metric(...,
  synchronous=False)``, and ``MlflowClient.log_batch`` of 1000 metrics a call;
* tensorboardX ``SummaryWriter.add_scalar`` (one call per point);
* wandb offline (WANDB_MODE=offline): ``run.log`` of 10 values (one call per step).
A peer that is not installed is skipped and listed as such (``pip install -e '.[bench]'``).

Slow peers log fewer points (``--slow-points``, default 5,000, for mlflow's per-point calls):
points/s is a rate, so it compares; the ``points`` column says what each one ran.

Run:  .venv/bin/python benchmarks/bench_vs_peers.py [--points 100000] [--slow-points 5000] [--json out.json]
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

KEYS = 10
# peer name -> (module that must be importable, label, points from which option)
PEERS: dict[str, tuple[str, str, str]] = {
    "trackd": ("trackd", "trackd log_metric", "points"),
    "trackd_metrics": ("trackd", "trackd log_metrics (10 keys/call)", "points"),
    "mlflow_sync": ("mlflow", "mlflow log_metric (sync)", "slow_points"),
    "mlflow_async": ("mlflow", "mlflow log_metric(synchronous=False)", "slow_points"),
    "mlflow_batch": ("mlflow", "mlflow log_batch (1000 metrics/call)", "batch_points"),
    "tensorboardx": ("tensorboardX", "tensorboardX add_scalar", "points"),
    "wandb": ("wandb", "wandb offline run.log (10 values/call)", "points"),
}
POINTS_PER_CALL = {"trackd": 1, "trackd_metrics": KEYS, "mlflow_sync": 1, "mlflow_async": 1, "mlflow_batch": 1000,
                   "tensorboardx": 1, "wandb": KEYS}


# -- workers: each runs in its own process and prints one JSON line -------------------------------


def _timed_steps(steps: int, call_per_step: Any, call_per_point: Any, values: list[float], offset: int = 0,
                 timed: bool = True) -> list[int]:
    """Run the workload; one sample per call (per point, or per step when ``call_per_step``).

    With ``timed=False`` the same calls run without clocks and no samples are returned: two clock
    reads and an append cost ~0.3 us a call here, more than trackd's call itself, so durable
    throughput is measured on untimed rounds and latency on timed ones.
    """
    clock = time.perf_counter_ns
    names = [f"metric_{k}" for k in range(KEYS)]
    samples: list[int] = []
    append = samples.append
    for s in range(offset, offset + steps):
        v = values[s & 4095]
        if call_per_step is not None:
            row = {name: v for name in names}
            if timed:
                t0 = clock()
                call_per_step(row, s)
                append(clock() - t0)
            else:
                call_per_step(row, s)
        elif timed:
            for name in names:
                t0 = clock()
                call_per_point(name, v, s)
                append(clock() - t0)
        else:
            for name in names:
                call_per_point(name, v, s)
    return samples


def worker(peer: str, points: int, repeats: int, warmup_steps: int, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    values = [rng.random() for _ in range(4096)]
    steps = max(1, points // KEYS)
    t_import = time.perf_counter_ns()
    rounds: list[dict[str, Any]] = []

    if peer in ("trackd", "trackd_metrics"):
        import trackd

        import_ns = time.perf_counter_ns() - t_import
        for r in range(2 * repeats):
            timed = r % 2 == 0
            trackd.start_run(run_name=f"{peer}-{r}")
            per_step = (lambda row, s: trackd.log_metrics(row, step=s)) if peer == "trackd_metrics" else None
            per_point = trackd.log_metric  # called as log_metric(key, value, step), as a training loop does
            _timed_steps(warmup_steps, per_step, per_point, values, offset=10**6)
            trackd.flush()
            t0 = time.perf_counter_ns()
            samples = _timed_steps(steps, per_step, per_point, values, timed=timed)
            t1 = time.perf_counter_ns()
            trackd.flush()
            t2 = time.perf_counter_ns()
            trackd.end_run()
            rounds.append({"samples": samples, "log_ns": t1 - t0, "durable_ns": t2 - t0, "timed": timed})

    elif peer in ("mlflow_sync", "mlflow_async", "mlflow_batch"):
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        import_ns = time.perf_counter_ns() - t_import
        for r in range(2 * repeats):
            timed = r % 2 == 0 or peer == "mlflow_batch"  # 1000 points a call: the clocks cost nothing
            with mlflow.start_run(run_name=f"{peer}-{r}") as run:
                run_id = run.info.run_id
                if peer == "mlflow_batch":
                    client = MlflowClient()
                    per_batch = 1000
                    clock = time.perf_counter_ns
                    ts = int(time.time() * 1000)

                    def batches(n_points: int, offset: int) -> list[list[Any]]:
                        out, cur = [], []
                        for s in range(offset, offset + n_points // KEYS):
                            v = values[s & 4095]
                            for k in range(KEYS):
                                cur.append(Metric(f"metric_{k}", v, ts, s))
                                if len(cur) == per_batch:
                                    out.append(cur)
                                    cur = []
                        if cur:
                            out.append(cur)
                        return out

                    for batch in batches(max(per_batch, warmup_steps * KEYS), 10**6):
                        client.log_batch(run_id, metrics=batch)
                    todo = batches(steps * KEYS, 0)
                    samples = []
                    t0 = clock()
                    for batch in todo:
                        b0 = clock()
                        client.log_batch(run_id, metrics=batch)
                        samples.append(clock() - b0)
                    t1 = t2 = clock()
                else:
                    sync = peer == "mlflow_sync"
                    per_point = (lambda k, v, s: mlflow.log_metric(k, v, step=s, synchronous=sync))
                    _timed_steps(warmup_steps, None, per_point, values, offset=10**6)
                    if not sync:
                        mlflow.flush_async_logging()
                    t0 = time.perf_counter_ns()
                    samples = _timed_steps(steps, None, per_point, values, timed=timed)
                    t1 = time.perf_counter_ns()
                    if not sync:
                        mlflow.flush_async_logging()
                    t2 = time.perf_counter_ns()
            rounds.append({"samples": samples, "log_ns": t1 - t0, "durable_ns": t2 - t0, "timed": timed})

    elif peer == "tensorboardx":
        from tensorboardX import SummaryWriter

        import_ns = time.perf_counter_ns() - t_import
        for r in range(2 * repeats):
            timed = r % 2 == 0
            writer = SummaryWriter(logdir=str(workdir / f"tb-{r}"))
            per_point = (lambda k, v, s: writer.add_scalar(k, v, s))
            _timed_steps(warmup_steps, None, per_point, values, offset=10**6)
            writer.flush()
            t0 = time.perf_counter_ns()
            samples = _timed_steps(steps, None, per_point, values, timed=timed)
            t1 = time.perf_counter_ns()
            writer.close()
            t2 = time.perf_counter_ns()
            rounds.append({"samples": samples, "log_ns": t1 - t0, "durable_ns": t2 - t0, "timed": timed})

    elif peer == "wandb":
        import wandb

        import_ns = time.perf_counter_ns() - t_import
        for r in range(2 * repeats):
            timed = r % 2 == 0
            run = wandb.init(project="trackd-bench", dir=str(workdir), name=f"wandb-{r}", settings=wandb.Settings(silent=True))
            # wandb's step must increase: the warm-up uses steps 0..w-1 and the timed part follows.
            warm = max(1, warmup_steps)
            per_step_w = (lambda row, s: run.log(row, step=s))
            _timed_steps(warm, per_step_w, None, values)
            t0 = time.perf_counter_ns()
            samples = _timed_steps(steps, per_step_w, None, values, offset=warm, timed=timed)
            t1 = time.perf_counter_ns()
            run.finish()
            t2 = time.perf_counter_ns()
            rounds.append({"samples": samples, "log_ns": t1 - t0, "durable_ns": t2 - t0, "timed": timed})
    else:
        raise SystemExit(f"unknown peer {peer!r}")

    for rd in rounds:
        rd["points"] = steps * KEYS
        rd["calls"] = len(rd["samples"])
        rd["stats"] = C.summarize_ns(rd["samples"]) if rd["samples"] else None
        rd["samples"] = rd["samples"][:: max(1, len(rd["samples"]) // 2000)]
    return {"peer": peer, "import_ns": import_ns, "rounds": rounds}


# -- the driver -------------------------------------------------------------------------------------


def run_peer(peer: str, points: int, args: Any, daemon: C.Daemon | None) -> dict[str, Any]:
    workdir = C.temp_dir("tdp-")
    try:
        if peer.startswith("trackd"):
            assert daemon is not None
            env = daemon.env()
        elif peer.startswith("mlflow"):
            env = C.mlflow_env(workdir / "mlruns")
        else:
            env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(workdir),
                       WANDB_CONFIG_DIR=str(workdir / "cfg"), WANDB_CACHE_DIR=str(workdir / "cache"), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, __file__, "--worker", peer, "--points", str(points), "--repeats", str(args.repeats),
               "--warmup-steps", str(args.warmup_steps), "--seed", str(args.seed), "--workdir", str(workdir)]
        proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            return {"peer": peer, "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": f"timed out after {args.timeout} s"}
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--points", type=int, default=100_000, help="points per round for trackd, tensorboardX and wandb")
    parser.add_argument("--slow-points", type=int, default=5_000, help="points per round for mlflow's per-point calls")
    parser.add_argument("--batch-points", type=int, default=20_000, help="points per round for mlflow log_batch")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per peer, each a fresh run")
    parser.add_argument("--warmup-steps", type=int, default=100, help="untimed steps before each round")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds one peer's subprocess may take")
    parser.add_argument("--worker", help=argparse_hidden())
    parser.add_argument("--workdir", help=argparse_hidden())
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.points, args.repeats, args.warmup_steps, args.seed, Path(args.workdir))))
        return 0

    peers = [p for p in args.peers.split(",") if p]
    results: dict[str, Any] = {}
    daemon = C.Daemon().start() if any(p.startswith("trackd") for p in peers) else None
    try:
        for peer in peers:
            module, label, which = PEERS[peer]
            if not C.have_module(module):
                results[peer] = {"peer": peer, "skipped": f"{module} is not installed (pip install -e '.[bench]')"}
                print(f"  {label}: skipped, {module} not installed", flush=True)
                continue
            points = getattr(args, which)
            t0 = time.perf_counter()
            results[peer] = run_peer(peer, points, args, daemon)
            print(f"  {label}: {points:,} points x {args.repeats} rounds in {time.perf_counter() - t0:.1f} s"
                  + (f"  ERROR {results[peer]['error']}" if "error" in results[peer] else ""), flush=True)
    finally:
        if daemon is not None:
            daemon.stop()

    rows = []
    summary: dict[str, Any] = {}
    for peer in peers:
        r = results[peer]
        label = PEERS[peer][1]
        if "rounds" not in r:
            rows.append([label, "-", "-", "-", "-", "-", "-", "-", "-", "-", r.get("skipped") or "error"])
            continue
        timed = [rd for rd in r["rounds"] if rd["timed"]]
        # Throughput from the untimed rounds (mlflow log_batch times every round: its clocks are per 1000 points).
        untimed = [rd for rd in r["rounds"] if not rd["timed"]] or timed
        p50 = C.median(rd["stats"]["p50"] for rd in timed)
        p99 = C.median(rd["stats"]["p99"] for rd in timed)
        per_point = C.median(rd["log_ns"] / rd["points"] for rd in untimed)
        pps = C.median(rd["points"] / (rd["durable_ns"] / 1e9) for rd in untimed)
        summary[peer] = {"p50_ns": p50, "p99_ns": p99, "log_ns_per_point": per_point, "durable_points_per_s": pps,
                         "points": timed[0]["points"], "calls_per_round": timed[0]["calls"], "import_ns": r["import_ns"]}
    base = summary.get("trackd")
    for peer in peers:
        if peer not in summary:
            continue
        s = summary[peer]
        ppc = POINTS_PER_CALL[peer]
        ratio_call = f"{s['p50_ns'] / ppc / base['p50_ns']:,.1f}x" if base else "-"
        note = "" if s["points"] == args.points else f"scaled to {s['points']:,} points (slow)"
        ratio_pps = f"{base['durable_points_per_s'] / s['durable_points_per_s']:,.1f}x" if base else "-"
        rows.append([PEERS[peer][1], C.num(s["points"]), ppc, C.us(s["p50_ns"]), C.us(s["p99_ns"]), C.us(s["log_ns_per_point"]),
                     C.num(s["durable_points_per_s"]), ratio_call, ratio_pps, f"{s['import_ns'] / 1e6:,.0f}", note])
    print()
    C.print_table(
        ["peer, mode", "points", "pts/call", "p50 us/call", "p99 us/call", "us/point (loop)", "pts/s until durable",
         "p50 per point / trackd", "trackd pts/s / peer", "import ms", "note"],
        rows,
        title=f"training-loop workload, {KEYS} keys per step, medians of {args.repeats} timed rounds (latency) and "
        f"{args.repeats} untimed rounds (throughput, no per-call clocks); 'us/point (loop)' is the whole untimed "
        "logging loop divided by points; ratios: a peer's p50 per point over trackd log_metric's p50, "
        "and trackd's durable pts/s over the peer's",
    )
    C.write_json(args.json, {k: v for k, v in vars(args).items() if k not in ("worker", "workdir")},
                 {"summary": summary, "raw": results}, loop="daemon default")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
