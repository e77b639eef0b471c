"""How long until a run's many distinct params, tags and metric keys are durable, against MLflow's
synchronous writes of the same?

A process starts a run, logs ``--params`` distinct params (one ``log_params``), ``--tags`` tags
(``set_tags``) and ``--metrics`` metric keys at one step (``log_metrics``), then calls ``flush()``.
Shown: the calls alone, and the time from the first call to ``flush()`` returned, which is what
``end_run()`` and the process's exit wait for (every file written by the daemon). Each trackd
round runs against a fresh daemon in its own process (short socket under /tmp, temporary store).

The baseline, in the same run: MLflow writing the same through its file store, synchronously
(``log_params`` in chunks of 100, its batch limit; ``set_tags``; ``log_metrics``), from the first
call to the last one returned. With ``--compare REV`` the daemon and client of git revision REV
(``git archive``: the code before a change) run too. Variants are interleaved, in an order
rotated each round, ``--repeats`` rounds; the table shows medians and ranges. Every round's files
are counted in the store; the stores are removed at the end. ``--dir`` puts them on another
filesystem: on an ext4 where other processes create and delete many files, making a file can
cost ~0.5 ms of CPU in the kernel (``find_inode_bit``/``recently_deleted`` in ``perf``), for
every variant alike, and that swamps what this measures.

Run:  .venv/bin/python benchmarks/bench_many_keys.py [--params 10000] [--tags 3000] [--metrics 5000]
          [--repeats 5] [--compare REV] [--no-mlflow] [--dir /tmp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as C

TRACKD_CHILD = """
import json, sys, time, trackd
params, tags, metrics = map(int, sys.argv[1:4])
started = time.perf_counter()
with trackd.start_run(run_name="bench-many-keys") as run:
    trackd.log_params({f"p{i}": i for i in range(params)})
    trackd.set_tags({f"t{i}": "v" for i in range(tags)})
    trackd.log_metrics({f"m{i}": float(i) for i in range(metrics)}, step=1)
    called = time.perf_counter()
    trackd.flush(timeout=600)
durable = time.perf_counter()
print(json.dumps({"calls_s": called - started, "durable_s": durable - started, "run_id": run.info.run_id}))
"""
MLFLOW_CHILD = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import mlflow
params, tags, metrics = map(int, sys.argv[1:4])
items = [(f"p{i}", i) for i in range(params)]
started = time.perf_counter()
with mlflow.start_run(run_name="bench-many-keys") as run:
    for i in range(0, len(items), 100):  # MAX_PARAMS_TAGS_PER_BATCH
        mlflow.log_params(dict(items[i:i + 100]))
    mlflow.set_tags({f"t{i}": "v" for i in range(tags)})
    mlflow.log_metrics({f"m{i}": float(i) for i in range(metrics)}, step=1)
    called = time.perf_counter()
durable = time.perf_counter()  # synchronous: every file is written when the call returns
print(json.dumps({"calls_s": called - started, "durable_s": durable - started, "run_id": run.info.run_id}))
"""



def counted(store: Path, run_id: str) -> dict[str, int]:
    """Files per folder of the run (no nested keys here): what was made durable."""
    run = next(store.glob(f"*/{run_id}"))
    return {name: len(os.listdir(run / name)) for name in ("params", "tags", "metrics")}


def run_child(code: str, sizes: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *sizes], env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"logging process failed ({proc.returncode}): {proc.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def trackd_round(args: argparse.Namespace, pythonpath: str, leftovers: list[Path]) -> dict[str, Any]:
    sizes = [str(args.params), str(args.tags), str(args.metrics)]
    # The daemon of that code too: it writes the store. In its own folder, so that the current
    # directory (first on sys.path for -m and -c) is not this tree.
    daemon = C.Daemon(env={"PYTHONPATH": pythonpath}, keep=True)
    leftovers.append(daemon.directory)
    folder = Path(tempfile.mkdtemp(prefix="bench-keys-", dir=args.dir))
    leftovers.append(folder)
    store = folder / "mlruns"
    try:
        daemon.start()
        cpu = C.cpu_seconds(daemon.pid)
        env = daemon.env(PYTHONPATH=pythonpath, TRACKD_TRACKING_URI=str(store))
        result = run_child(TRACKD_CHILD, sizes, env, daemon.directory)
        result["daemon_cpu_s"] = C.cpu_seconds(daemon.pid) - cpu
        result["files"] = counted(store, result["run_id"])
    finally:
        daemon.stop()
    return result


def mlflow_round(args: argparse.Namespace, leftovers: list[Path]) -> dict[str, Any]:
    sizes = [str(args.params), str(args.tags), str(args.metrics)]
    folder = Path(tempfile.mkdtemp(prefix="bench-keys-", dir=args.dir))
    leftovers.append(folder)
    store = folder / "mlruns"
    result = run_child(MLFLOW_CHILD, sizes, C.mlflow_env(store), folder)
    result["files"] = counted(store, result["run_id"])
    return result


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--params", type=int, default=10_000, help="distinct params logged")
    parser.add_argument("--tags", type=int, default=3_000, help="distinct tags set")
    parser.add_argument("--metrics", type=int, default=5_000, help="distinct metric keys logged, one point each")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the table shows medians")
    parser.add_argument("--compare", metavar="REV", help="also measure the daemon and client of this git revision")
    parser.add_argument("--no-mlflow", action="store_true", help="leave out the MLflow baseline")
    parser.add_argument("--dir", default="/tmp", help="folder the stores are made in (their filesystem)")
    args = parser.parse_args()

    variants: dict[str, Any] = {"trackd (this tree)": str(C.HERE.parent)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    if args.compare:
        variants[f"trackd ({args.compare})"] = C.checkout(args.compare, scratch)
    if not args.no_mlflow and C.have_module("mlflow"):
        variants["mlflow (sync)"] = None
    expected = {"params": args.params, "tags": args.tags, "metrics": args.metrics}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    leftovers = [scratch]
    names = list(variants)
    try:
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                pythonpath = variants[name]
                result = mlflow_round(args, leftovers) if pythonpath is None else trackd_round(args, pythonpath, leftovers)
                files = result["files"]
                # trackd adds mlflow.runName, mlflow.user, mlflow.source.* tags, as MLflow does.
                if files["params"] != args.params or files["metrics"] != args.metrics or files["tags"] < args.tags:
                    raise RuntimeError(f"{name} round {r + 1} wrote {files}, expected {expected}")
                raw[name].append(result)
            print(f"  round {r + 1} of {args.repeats} done", flush=True)
    finally:
        for folder in leftovers:
            shutil.rmtree(folder, ignore_errors=True)

    baseline = C.median(m["durable_s"] for m in raw["mlflow (sync)"]) if "mlflow (sync)" in raw else None
    rows, summary = [], []
    for name, results in raw.items():
        durable = sorted(m["durable_s"] for m in results)
        calls = C.median(m["calls_s"] for m in results)
        median = C.median(durable)
        cpu = C.median(m["daemon_cpu_s"] for m in results) if "daemon_cpu_s" in results[0] else None
        summary.append({"variant": name, "n": len(results), "calls_s": calls, "durable_s": median,
                        "durable_min_s": durable[0], "durable_max_s": durable[-1], "daemon_cpu_s": cpu})
        rows.append([name, len(results), f"{calls:.3f}", f"{median:.3f}", f"{durable[0]:.2f}-{durable[-1]:.2f}",
                     "-" if cpu is None else f"{cpu:.2f}", "-" if baseline is None else f"{median / baseline:.2f}x"])
    print()
    C.print_table(
        ["variant", "runs", "calls s", "until durable s", "range s", "daemon CPU s", "vs mlflow"], rows,
        title=f"{args.params} params, {args.tags} tags, {args.metrics} metric keys in one run: medians of "
        f"{args.repeats} interleaved rounds; 'until durable' is from the first call to flush() returned "
        "(MLflow: to its last call returned)",
    )
    C.write_json(args.json, vars(args), {"summary": summary, "raw": raw}, loop="daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
