"""How much memory does logging a million points add to the training process, over a bare
``import trackd``?

Runs short processes one after another against a daemon already running in its own process
(short socket under /tmp, temporary store), each variant ``--repeats`` times, interleaved:

* ``bare: python -c pass``: the interpreter alone (for context);
* ``import trackd``: the baseline the target is measured against;
* ``log N points``: import, ``start_run``, ``--points`` points (``trackd.log_metric``, steps of
  ``--keys`` keys, in a burst), ``flush()``, then read the memory, then ``end_run``.

Each process reads its own ``VmRSS`` (resident now) and ``VmHWM`` (the peak resident size of its
life so far) from ``/proc/self/status``; the table shows medians and both minus the ``import
trackd`` baseline. The client buffer has its default bound (TRACKD_MAX_BUFFERED, 25,000 events)
and policy (``block``): a burst of a million points overruns it whenever the daemon writes more
slowly than the loop logs, so the peak also shows whether the bound holds under that overload
(the ``buffer filled`` column; ``dropped`` must stay 0 with ``block``).

A second table answers the same question for inline artifacts, which the event bound counts as one
event each: a process logs ``--artifacts`` 1 MiB ``log_text`` files in a burst, (a) beside a daemon
stopped with SIGSTOP (resumed once the burst has waited ``--stall`` seconds, or has ended), and (b)
with no daemon at all (TRACKD_AUTOSTART=0, so they go to the spool file). Shown: the peak RSS
(VmHWM) during the burst minus the RSS before it, against the artifacts' total size. Before
TRACKD_MAX_BUFFERED_BYTES (64 MiB) it grew with the burst (512 MiB logged: +515 MB and +513 MB).

Run:  .venv/bin/python benchmarks/bench_client_memory.py [--points 1000000] [--artifacts 512] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import _common as C

READ_MEMORY = """
def _memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split()[:2]
                out[name[:-1]] = int(value)
    return out
"""
BARE = READ_MEMORY + """
import json
print(json.dumps(_memory()))
"""
IMPORT_TRACKD = READ_MEMORY + """
import json
import trackd
print(json.dumps(_memory()))
"""
LOG_POINTS = READ_MEMORY + """
import json, random, sys
import trackd
import trackd.client
points, keys, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
values = [rng.random() for _ in range(4096)]
names = [f"metric_{k}" for k in range(keys)]
trackd.start_run(run_name="bench-client-memory")
log_metric = trackd.log_metric
for step in range(points // keys):
    v = values[step & 4095]
    for name in names:
        log_metric(name, v, step=step)
trackd.flush()
memory = _memory()
client = trackd.client.get_client()
stats = client.stats()
memory.update(points=(points // keys) * keys, dropped=stats["dropped"], max_buffered=client.config.max_buffered,
              filled=bool(client._sender._warned_full))
trackd.end_run()
print(json.dumps(memory))
"""

# argv: artifacts, mode ("stopped": connected first, so the test's SIGSTOP finds it sending; "none").
LOG_ARTIFACTS = READ_MEMORY + """
import json, sys
import trackd
import trackd.client
artifacts, mode = int(sys.argv[1]), sys.argv[2]
trackd.start_run(run_name="bench-client-memory-artifacts")
if mode == "stopped":
    trackd.flush()
print("ready", flush=True)
sys.stdin.readline()
before = _memory()
for i in range(artifacts):
    trackd.log_text(f"{i:08d}" * (1024 * 1024 // 8), f"chunks/{i}.txt")
memory = _memory()
stats = trackd.client.get_client().stats()
print(json.dumps({"rss_before_kb": before["VmRSS"], "peak_kb": memory["VmHWM"], "dropped": stats["dropped"],
                  "spooled": stats["spooled"]}), flush=True)
sys.stdin.readline()
if mode == "stopped":
    trackd.flush(timeout=120)
"""


def run_artifacts(daemon: C.Daemon, artifacts: int, mode: str, stall: float) -> dict[str, Any]:
    """One process logging ``artifacts`` MiB inline beside the stopped daemon, or with none."""
    env = daemon.env() if mode == "stopped" else daemon.env(TRACKD_SOCKET=str(daemon.directory / "none.sock"))
    child = subprocess.Popen([sys.executable, "-c", LOG_ARTIFACTS, str(artifacts), mode], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("artifact logging process failed")
        if mode == "stopped":
            daemon.suspend()
        child.stdin.write("go\n")
        child.stdin.flush()
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(child.stdout.readline() if child.stdout else ""), daemon=True)
        reader.start()
        reader.join(stall)  # a burst that waits for room ends only once the daemon runs again
        daemon.resume()
        reader.join(300)
        child.stdin.write("end\n")
        child.stdin.flush()
        child.wait(300)
    finally:
        daemon.resume()
        if child.poll() is None:
            child.kill()
    result: dict[str, Any] = json.loads(lines[0])
    return result


def run_once(code: str, env: dict[str, str], *argv: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--points", type=int, default=1_000_000, help="points the logging process logs")
    parser.add_argument("--keys", type=int, default=10, help="metric keys per step")
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant; the table shows medians")
    parser.add_argument("--artifacts", type=int, default=512, help="1 MiB log_text calls in the artifact burst (0: skip it)")
    parser.add_argument("--stall", type=float, default=3.0, help="seconds the daemon stays stopped during that burst")
    args = parser.parse_args()

    logged = f"log {args.points:,} points + flush"
    variants: list[tuple[str, str, tuple[str, ...]]] = [
        ("bare: python -c pass", BARE, ()),
        ("import trackd", IMPORT_TRACKD, ()),
        (logged, LOG_POINTS, (str(args.points), str(args.keys))),
    ]
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    modes = {"daemon stopped (SIGSTOP)": "stopped", "no daemon (spooled)": "none"} if args.artifacts else {}
    raw_artifacts: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    with C.Daemon() as daemon:
        env = daemon.env()
        for r in range(args.repeats):
            for name, code, argv in variants:
                extra = (str(args.seed + r),) if argv else ()
                raw[name].append(run_once(code, env, *argv, *extra))
            for name, mode in modes.items():
                raw_artifacts[name].append(run_artifacts(daemon, args.artifacts, mode, args.stall))
            print(f"  round {r + 1}: {logged}: VmRSS {raw[logged][-1]['VmRSS'] / 1024:.1f} MB, "
                  f"VmHWM {raw[logged][-1]['VmHWM'] / 1024:.1f} MB", flush=True)

    base_rss = C.median(m["VmRSS"] for m in raw["import trackd"]) / 1024
    base_hwm = C.median(m["VmHWM"] for m in raw["import trackd"]) / 1024
    summary = []
    rows = []
    for name, _, _ in variants:
        rss = C.median(m["VmRSS"] for m in raw[name]) / 1024
        hwm = C.median(m["VmHWM"] for m in raw[name]) / 1024
        s: dict[str, Any] = {"variant": name, "n": len(raw[name]), "rss_mb": rss, "hwm_mb": hwm,
                             "rss_minus_import_mb": rss - base_rss, "hwm_minus_import_mb": hwm - base_hwm}
        if name == logged:
            s.update(dropped=sum(m["dropped"] for m in raw[name]), filled=sum(bool(m["filled"]) for m in raw[name]),
                     max_buffered=raw[name][0]["max_buffered"])
        summary.append(s)
        rows.append([name, s["n"], f"{rss:.1f}", f"{hwm:.1f}", f"{rss - base_rss:+.1f}", f"{hwm - base_hwm:+.1f}",
                     f"{s['filled']} of {s['n']}" if "filled" in s else "-", s.get("dropped", "-")])
    print()
    C.print_table(
        ["variant", "processes", "RSS MB", "peak RSS MB", "RSS - import MB", "peak - import MB", "buffer filled", "dropped"],
        rows,
        title=f"client memory: medians of {args.repeats} processes; RSS (VmRSS) read after flush(), peak is VmHWM; "
        f"{args.keys} keys per step, default buffer bound",
    )
    artifact_summary = []
    for name, results in raw_artifacts.items():
        growth = C.median((m["peak_kb"] - m["rss_before_kb"]) / 1024 for m in results)
        artifact_summary.append({"variant": name, "n": len(results), "artifacts_mib": args.artifacts, "peak_growth_mb": growth,
                                 "dropped": sum(m["dropped"] for m in results), "spooled": C.median(m["spooled"] for m in results)})
    if artifact_summary:
        print()
        C.print_table(
            ["inline artifacts", "processes", "logged MiB", "peak - before MB", "spooled (median)", "dropped"],
            [[s["variant"], s["n"], s["artifacts_mib"], f"{s['peak_growth_mb']:+.1f}", f"{s['spooled']:.0f}", s["dropped"]]
             for s in artifact_summary],
            title=f"client memory, {args.artifacts} log_text calls of 1 MiB in a burst: medians of {args.repeats} processes; "
            "peak is VmHWM, default TRACKD_MAX_BUFFERED_BYTES",
        )
    C.write_json(args.json, vars(args), {"summary": summary, "raw": raw, "artifacts": artifact_summary,
                                         "raw_artifacts": raw_artifacts}, loop="daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
