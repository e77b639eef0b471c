"""How much memory does sending a large spool file again cost: the process that wrote it, when a
daemon answers again, and ``trackd sync``?

Each round starts a daemon in its own process (short socket under /tmp, temporary store) for each
variant, ``--repeats`` rounds, variants interleaved:

* ``process resends its spool``: a process logs ``--spool-mb`` inline artifacts of 1 MiB
  (``trackd.log_text``) while no daemon answers (TRACKD_AUTOSTART=0), so they go to its spool
  file; it then resets its peak RSS (``/proc/self/clear_refs``), the daemon starts, and it flushes
  until the daemon wrote everything. Shown: the peak RSS during the resend minus the RSS before it.
* ``trackd sync of a spool``: a spool file of the same size left by an exited process (written
  here, frame by frame), delivered by ``python -m trackd.cli sync``. Shown: that process's peak
  RSS (``ru_maxrss`` from ``wait4``).

The baseline, in the same run, is each variant with a spool of one artifact (``1 MiB``). With
``--compare REV`` the client side (the logging process, ``trackd sync``) also runs the trackd of
git revision REV (``git archive``: the code before a change), against the same daemon code. Each
logging process runs with ``MALLOC_MMAP_THRESHOLD_=131072``, so the memory its logging freed goes
back to the system before the resend and the peak is the resend's own.

Run:  .venv/bin/python benchmarks/bench_spool_replay.py [--spool-mb 200] [--repeats 3] [--compare REV] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as C

from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, RecordKind, encode_frame

MIB = 1024 * 1024
RESENDER = """
import json, sys, trackd
def memory():
    with open("/proc/self/status") as f:
        return {l.split()[0][:-1]: int(l.split()[1]) for l in f if l.startswith(("VmRSS:", "VmHWM:"))}
chunks = int(sys.argv[1])
trackd.start_run(run_name="bench-spool-replay")
for i in range(chunks):
    trackd.log_text(f"{i:08d}" * (MIB // 8), f"chunks/{i}.txt")
try:
    trackd.flush(timeout=5)  # no daemon, none started: everything goes to the spool file
except Exception:
    pass
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
before = memory()["VmRSS"]
print("ready", flush=True)
sys.stdin.readline()
trackd.flush(timeout=600)
print(json.dumps({"rss_before_kb": before, "peak_kb": memory()["VmHWM"]}), flush=True)
trackd.end_run()
""".replace("MIB", str(MIB))


def resend(daemon: C.Daemon, chunks: int, pythonpath: str) -> dict[str, Any]:
    """A process that spools ``chunks`` MiB and resends them when the daemon starts."""
    env = daemon.env(TRACKD_CONNECT_TIMEOUT="0.5", PYTHONPATH=pythonpath, MALLOC_MMAP_THRESHOLD_="131072")
    # In the daemon's folder: the current directory comes first on sys.path, before PYTHONPATH.
    child = subprocess.Popen([sys.executable, "-c", RESENDER, str(chunks)], env=env, text=True, cwd=daemon.directory,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError(f"resending process failed: {child.communicate(timeout=60)[1][-1500:]}")
    spooled = sum(p.stat().st_size for p in (daemon.directory / "spool").glob("*.spool"))
    daemon.start()
    out, err = child.communicate("go\n", timeout=900)
    if child.returncode != 0:
        raise RuntimeError(f"resending process failed ({child.returncode}): {err[-1500:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(spool_bytes=spooled, extra_kb=result["peak_kb"] - result["rss_before_kb"])
    return result


def write_spool(path: Path, store: Path, chunks: int) -> int:
    """A spool file an exited process left: its Hello, a run's creation, ``chunks`` MiB artifacts."""
    run_id = os.urandom(16).hex()
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id=path.stem, pid=1, host=socket.gethostname(),
                  store_root=str(store))
    create = (RecordKind.CREATE_RUN.value, run_id, "0", "bench", "bench-spool-sync", 1_700_000_000_000, {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(encode_frame(hello) + encode_frame(Batch(seq=1, records=[create])))
        for i in range(chunks):
            content = f"{i:08d}".encode() * (MIB // 8)
            artifact = (RecordKind.ARTIFACT.value, run_id, f"chunks/{i}.txt", content, None, None)
            f.write(encode_frame(Batch(seq=i + 2, records=[artifact])))
    return path.stat().st_size


def sync(daemon: C.Daemon, chunks: int, pythonpath: str) -> dict[str, Any]:
    """``trackd sync`` of a spool of ``chunks`` MiB; its peak RSS."""
    spool_dir = daemon.directory / "orphans"
    spooled = write_spool(spool_dir / "exited.spool", daemon.store, chunks)
    daemon.start()
    env = daemon.env(PYTHONPATH=pythonpath)
    proc = subprocess.Popen([sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.socket),
                             "--spool-dir", str(spool_dir)], env=env, cwd=daemon.directory,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    if os.waitstatus_to_exitcode(status) != 0 or any(spool_dir.glob("*.spool")):
        raise RuntimeError(f"trackd sync failed: {stderr[-1500:]}")
    return {"spool_bytes": spooled, "peak_kb": usage.ru_maxrss}



def measure_all(args: argparse.Namespace, codes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every variant, size and client code, interleaved, ``args.repeats`` times."""
    sizes = {"1 MiB (baseline)": 1, f"{args.spool_mb} MiB": args.spool_mb}
    measures = {"process resends its spool": resend, "trackd sync of a spool": sync}
    raw: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.repeats):
        for code, pythonpath in codes.items():
            for what, measure in measures.items():
                for size, chunks in sizes.items():
                    daemon = C.Daemon()  # started by ``measure`` once the spool is there
                    try:
                        result = measure(daemon, chunks, pythonpath)
                    finally:
                        daemon.stop()
                    raw.setdefault(f"{code}|{what}|{size}", []).append(result)
        print(f"  round {r + 1} of {args.repeats} done", flush=True)
    return raw


def main() -> int:
    parser = C.base_parser(__doc__)
    parser.add_argument("--spool-mb", type=int, default=200, help="MiB of inline artifacts in the large spool")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the table shows medians")
    parser.add_argument("--compare", metavar="REV", help="also measure the client code of this git revision")
    args = parser.parse_args()

    codes = {"this tree": str(C.HERE.parent)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    if args.compare:
        codes[args.compare] = C.checkout(args.compare, scratch)
    try:
        raw = measure_all(args, codes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows, summary = [], []
    for key, results in raw.items():
        code, what, size = key.split("|")
        peak = C.median(m["peak_kb"] for m in results) / 1024
        extra = C.median(m["extra_kb"] for m in results) / 1024 if "extra_kb" in results[0] else None
        spool_mb = results[0]["spool_bytes"] / MIB
        summary.append({"code": code, "variant": what, "size": size, "n": len(results), "spool_mb": spool_mb,
                        "peak_rss_mb": peak, "peak_minus_before_mb": extra})
        rows.append([f"{what}, {size}", code, len(results), f"{spool_mb:.1f}", f"{peak:.1f}",
                     "-" if extra is None else f"{extra:+.1f}"])
    print()
    C.print_table(
        ["variant", "client code", "runs", "spool MB", "peak RSS MB", "peak - RSS before MB"], rows,
        title=f"spool resend memory: medians of {args.repeats} rounds; peak is VmHWM (reset before the resend) "
        "for the resending process, ru_maxrss for trackd sync",
    )
    C.write_json(args.json, vars(args), {"summary": summary, "raw": raw}, loop="daemon default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
