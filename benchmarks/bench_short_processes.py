"""What does trackd add to a short Python process (benchmark suites launch hundreds), next to a bare
interpreter and to MLflow?

Runs N short processes one after another for each variant, interleaved round-robin so machine
noise hits every variant alike, and reports the median wall time per process (fork/exec until
exit, ``time.perf_counter_ns()``) and the difference to the bare interpreter (the baseline):

* ``bare``: ``python -c pass``;
* ``import trackd``: the import alone (the process also prints the import's own time, measured
  in-process with ``perf_counter_ns``; the median of those is the "import trackd" line);
* ``trackd run``: import, ``start_run``, 1,000 points (``log_metric``), ``end_run`` (which waits
  until they are in the store), through a daemon already running in its own process (short
  socket under /tmp, temporary store);
* ``mlflow run``: the same with MLflow and a ``file://`` store (MLFLOW_ALLOW_FILE_STORE=true,
  MLFLOW_DISABLE_TELEMETRY=true). ``import mlflow`` takes about a second, so by default it runs
  ``--mlflow-n`` (10) processes rather than N; its row says how many.

One ``python -X importtime -c "import trackd"`` run lists the slowest modules in the JSON file.

Python compiles a module's source unless a cached ``.pyc`` is valid: compiling trackd is ~27 ms
of a short run on a 2-core machine. ``pip install`` byte-compiles what it installs, and a source
checkout caches ``.pyc`` files on first import, except where PYTHONDONTWRITEBYTECODE is set (as in
some CI and sandbox environments). So by default trackd is byte-compiled first (``--bytecode
cached``); ``--bytecode source`` removes trackd's ``__pycache__`` folders and sets
PYTHONDONTWRITEBYTECODE=1 for the children, so every process compiles trackd.

Run:  .venv/bin/python benchmarks/bench_short_processes.py [-n 100] [--mlflow-n 10] [--bytecode cached|source] [--json out.json]
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

IMPORT_TRACKD = "import time; t = time.perf_counter_ns(); import trackd; print(time.perf_counter_ns() - t)"
TRACKD_RUN = """
import trackd
with trackd.start_run():
    for i in range(POINTS):
        trackd.log_metric("loss", 1.0 / (i + 1), step=i)
"""
MLFLOW_RUN = """
import mlflow
with mlflow.start_run():
    for i in range(POINTS):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
"""


def run_once(code: str, env: dict[str, str]) -> tuple[int, str]:
    t0 = time.perf_counter_ns()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter_ns() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return elapsed, proc.stdout


def prepare_bytecode(mode: str, env: dict[str, str]) -> None:
    """Byte-compile trackd (``cached``), or remove its ``.pyc`` files and stop children writing them (``source``)."""
    import trackd

    package = Path(trackd.__file__).parent
    if mode == "cached":
        if not compileall.compile_dir(package, quiet=1):
            raise RuntimeError(f"could not byte-compile {package}")
        return
    for cache in package.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    env["PYTHONDONTWRITEBYTECODE"] = "1"


def importtime_top(env: dict[str, str], top: int = 15) -> list[dict[str, Any]]:
    """The slowest modules (self time) of ``import trackd`` from one ``-X importtime`` run."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import trackd"], env=env, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        rows.append({"self_us": int(parts[0]), "cumulative_us": int(parts[1]), "module": parts[2].strip()})
    total = next((r["cumulative_us"] for r in rows if r["module"] == "trackd"), None)
    rows.sort(key=lambda r: r["self_us"], reverse=True)
    return [{"trackd_cumulative_us": total}] + rows[:top]


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("-n", type=int, default=100, help="processes per variant")
    parser.add_argument("--mlflow-n", type=int, default=10, help="processes for the mlflow variant (each takes seconds)")
    parser.add_argument("--points", type=int, default=1_000, help="points each run logs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed processes per variant first")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the mlflow variant")
    parser.add_argument("--bytecode", choices=("cached", "source"), default="cached",
                        help="byte-compile trackd first (as pip install does), or make every process compile its source")
    args = parser.parse_args()

    with C.Daemon() as daemon:
        env = daemon.env()
        prepare_bytecode(args.bytecode, env)
        mlflow_store = C.temp_dir("tdm-")
        try:
            variants: list[tuple[str, str, dict[str, str], int]] = [
                ("bare: python -c pass", "pass", env, args.n),
                ("import trackd", IMPORT_TRACKD, env, args.n),
                (f"trackd: start_run + {args.points:,} points + end_run", TRACKD_RUN.replace("POINTS", str(args.points)), env, args.n),
            ]
            if not args.no_mlflow and C.have_module("mlflow"):
                variants.append((f"mlflow: start_run + {args.points:,} points + end_run",
                                 MLFLOW_RUN.replace("POINTS", str(args.points)), C.mlflow_env(mlflow_store / "mlruns"), args.mlflow_n))
            for _, code, venv, _ in variants:
                for _ in range(args.warmup):
                    run_once(code, venv)
            wall: dict[str, list[int]] = {name: [] for name, _, _, _ in variants}
            import_ns: list[int] = []
            for i in range(max(n for _, _, _, n in variants)):
                for name, code, venv, n in variants:
                    if i >= n:
                        continue
                    elapsed, out = run_once(code, venv)
                    wall[name].append(elapsed)
                    if code is IMPORT_TRACKD:
                        import_ns.append(int(out.strip()))
                if (i + 1) % 20 == 0:
                    print(f"  {i + 1} rounds", flush=True)
            top = importtime_top(env)
        finally:
            shutil.rmtree(mlflow_store, ignore_errors=True)

    bare = C.summarize_ns(wall[variants[0][0]])["p50"]
    rows = []
    summary = []
    for name, _, _, _ in variants:
        st = C.summarize_ns(wall[name])
        s = {"variant": name, "n": st["n"], "median_ms": st["p50"] / 1e6, "p99_ms": st["p99"] / 1e6,
             "minus_bare_ms": (st["p50"] - bare) / 1e6}
        summary.append(s)
        rows.append([name, s["n"], f"{s['median_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['minus_bare_ms']:+.1f}"])
    imp = C.summarize_ns(import_ns)
    rows.append(["import trackd, timed in-process", imp["n"], f"{imp['p50'] / 1e6:.1f}", f"{imp['p99'] / 1e6:.1f}", "-"])
    print()
    C.print_table(["variant", "processes", "median ms", "p99 ms", "median - bare ms"], rows,
                  title=f"short processes, run one after another (variants interleaved); trackd bytecode: {args.bytecode}")
    print(f"\n-X importtime: import trackd {top[0]['trackd_cumulative_us'] / 1000:.1f} ms cumulative; slowest modules (self):")
    for row in top[1:8]:
        print(f"  {row['self_us'] / 1000:6.1f} ms  {row['module']}")
    C.write_json(args.json, vars(args), {"summary": summary, "import_trackd_ns": import_ns, "wall_ns": wall,
                                          "importtime_top": top}, loop="daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
