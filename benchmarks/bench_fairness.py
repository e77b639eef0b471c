"""How much does a neighbour slow a normal client's flush: a slowloris connection, a flooding
connection, both at once, and a process logging a large checkpoint, against the same client alone?

A normal client (``trackd.Client``, in this process) logs 10 points and calls ``flush()``, ``--rounds``
times per phase; each flush's latency is ``time.perf_counter_ns()`` around the call. Phases, each
with a fresh daemon in its own process (short socket path under /tmp, temporary store):

- ``alone``: the baseline, nothing else connected.
- ``slowloris``: ``--slow`` connections each send a valid Hello and half a frame, then nothing.
- ``flood``: one process sends Batch frames of ``--flood-points`` metric points and a GetStatus
  after each, as fast as the socket takes them, and reads its replies in a thread.
- ``both``: the slowloris connections and the flooder.
- ``artifact``: one process logs a ``--artifact-mib`` file with ``log_artifact`` and flushes, again
  and again (a rank saving checkpoints); the daemon copies it from its path (``artifact_snapshot=False``). The table's last
  column counts the copies made while the flushes were measured (the neighbour's flushes returned).

The flooder's points are real writes: the normal client's flush shares the writer thread with
them, so ``flood`` measures fairness of the event loop plus the cost of sharing the disk.

Run:  .venv/bin/python benchmarks/bench_fairness.py [--rounds 200] [--repeats 3] [--artifact-mib 1024] [--json out.json]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import _common as C

import trackd
from trackd.client import ClientConfig
from trackd.protocol import PROTOCOL_VERSION

FLOODER = r"""
import os, socket, sys, threading, time
import msgpack
path, store, points, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def frame(value):
    body = msgpack.packb(value, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
sock.sendall(frame([1, version, "flooder-" + os.urandom(4).hex(), os.getpid(), "bench", store]))
threading.Thread(target=lambda: [None for _ in iter(lambda: sock.recv(1 << 20), b"")], daemon=True).start()
run_id = os.urandom(16).hex()
sock.sendall(frame([3, 1, [[5, run_id, "0", "bench", "flood", 1_700_000_000_000, {}]]]))
records = [[1, run_id, "flood", 0.5, 1_700_000_000_000, step] for step in range(points)]
print("flooding", flush=True)
seq = 1
while True:
    seq += 1
    sock.sendall(frame([3, seq, records]) + frame([12, seq]))
"""

# Logs the file argv[3] as an artifact and flushes, printing a line per copy, until killed.
CHECKPOINTER = r"""
import sys, trackd
from trackd.client import ClientConfig
socket_path, store, source = sys.argv[1:4]
# By path (artifact_snapshot=False), as before snapshots: the question is the daemon's copy beside
# a neighbour's writes, not the logging process's own copy at the call (bench_artifact_snapshot.py).
config = ClientConfig(socket_path=socket_path, autostart=False, artifact_snapshot=False)
with trackd.Client(store, config=config) as client:
    run_id = client.create_run("0").info.run_id
    print("logging", flush=True)
    while True:
        client.log_artifact(run_id, source)
        client.flush(timeout=600)
        print("copied", flush=True)
"""

PHASES = ("alone", "slowloris", "flood", "both", "artifact")


def slowloris(socket_path: Path, store: Path, count: int) -> list[socket.socket]:
    """``count`` connections that each send a Hello and half a frame, then nothing."""
    import msgpack

    socks = []
    for number in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(socket_path))
        body = msgpack.packb([1, PROTOCOL_VERSION, f"slow-{number}", 0, "bench", str(store)], use_bin_type=True)
        # A header announcing 1000 bytes, then two of them.
        sock.sendall(len(body).to_bytes(4, "big") + body + (1000).to_bytes(4, "big") + b"\x93\x03")
        socks.append(sock)
    return socks


def measure(client: trackd.Client, run_id: str, rounds: int, step: int) -> list[int]:
    samples = []
    for _ in range(rounds):
        for _ in range(10):
            client.log_metric(run_id, "loss", 0.5, step=step)
            step += 1
        t0 = time.perf_counter_ns()
        client.flush(timeout=60)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def note_copies(lines: IO[str], copied_at: list[float]) -> None:
    """Note when each of the checkpointer's copies was flushed."""
    for line in lines:
        if line.startswith("copied"):
            copied_at.append(time.monotonic())


def checkpoint_file(mib: int) -> Path:
    """A ``mib`` MiB file of random bytes (one random MiB repeated), in a temporary folder."""
    path = C.temp_dir("tdb-ckpt-") / "model.pt"
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)
    return path


def one_phase(phase: str, args: Any, checkpoint: Path) -> dict[str, float]:
    with C.Daemon(loop=args.loop) as daemon:
        config = ClientConfig(socket_path=daemon.socket, autostart=False, connect_timeout=5.0)
        socks: list[socket.socket] = []
        flooder: subprocess.Popen[str] | None = None
        copied_at: list[float] = []
        reader: threading.Thread | None = None
        try:
            with trackd.Client(str(daemon.store), config=config) as client:
                run_id = client.create_run("0").info.run_id
                measure(client, run_id, args.warmup, 0)
                if phase in ("slowloris", "both"):
                    socks = slowloris(daemon.socket, daemon.store, args.slow)
                if phase in ("flood", "both"):
                    flooder = subprocess.Popen(
                        [sys.executable, "-c", FLOODER, str(daemon.socket), str(daemon.store), str(args.flood_points),
                         str(PROTOCOL_VERSION)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )
                    assert flooder.stdout is not None
                    flooder.stdout.readline()
                    time.sleep(0.2)
                if phase == "artifact":
                    flooder = subprocess.Popen(
                        [sys.executable, "-c", CHECKPOINTER, str(daemon.socket), str(daemon.store), str(checkpoint)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )
                    assert flooder.stdout is not None
                    flooder.stdout.readline()
                    reader = threading.Thread(target=note_copies, args=(flooder.stdout, copied_at), daemon=True)
                    reader.start()
                    time.sleep(0.2)  # its first copy is under way
                start = time.monotonic()
                samples = measure(client, run_id, args.rounds, 1_000_000)
                copies = sum(1 for t in copied_at if t >= start)
                if flooder is not None and flooder.poll() is not None:
                    # A flooder that died (refused, say) measured nothing: this used to pass unnoticed
                    # when the protocol version changed under its hard-coded Hello.
                    assert flooder.stderr is not None
                    raise SystemExit(f"the flooder exited during the {phase} phase: {flooder.stderr.read()[-800:]}")
                return {**C.summarize_ns(samples), "copies": copies}
        finally:
            if flooder is not None:
                flooder.kill()
                flooder.wait(10)
                if reader is not None:
                    reader.join(10)
                for stream in (flooder.stdout, flooder.stderr):
                    if stream is not None:
                        stream.close()
            for sock in socks:
                sock.close()


def main() -> None:
    parser = C.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="flushes measured per phase")
    parser.add_argument("--warmup", type=int, default=20, help="flushes before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="fresh daemons per phase; the table shows medians")
    parser.add_argument("--slow", type=int, default=50, help="slowloris connections")
    parser.add_argument("--flood-points", type=int, default=2000, help="metric points per flooding Batch")
    parser.add_argument("--artifact-mib", type=int, default=1024, help="size of the checkpoint the artifact phase logs, in MiB")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default=None, help="daemon event loop (default: the daemon's choice)")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {phase: [] for phase in PHASES}
    checkpoint = checkpoint_file(args.artifact_mib)
    try:
        for _ in range(args.repeats):
            for phase in PHASES:
                results[phase].append(one_phase(phase, args, checkpoint))
    finally:
        shutil.rmtree(checkpoint.parent, ignore_errors=True)
    base = C.median(r["p50"] for r in results["alone"])
    rows = []
    for phase in PHASES:
        p50 = C.median(r["p50"] for r in results[phase])
        p99 = C.median(r["p99"] for r in results[phase])
        copies = C.num(C.median(r["copies"] for r in results[phase])) if phase == "artifact" else ""
        rows.append([phase, args.rounds, C.us(p50), C.us(p99), C.us(C.median(r["max"] for r in results[phase])), C.num(p50 / base, 2), copies])
    C.print_table(["phase", "flushes", "p50 us", "p99 us", "max us", "p50 / alone", "copies meanwhile"], rows,
                  title=f"flush() latency of a normal client beside hostile connections (medians of {args.repeats})")
    C.write_json(args.json, vars(args), results, loop=args.loop)


if __name__ == "__main__":
    main()
