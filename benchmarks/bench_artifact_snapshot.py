"""What does ``log_artifact`` of a large file cost the caller now that trackd copies it at the call,
next to sending it by path (TRACKD_ARTIFACT_SNAPSHOT=0) and to MLflow's ``log_artifact``?

For each ``--sizes-mib`` file (random bytes, read once first so the page cache is warm), the
variants run round-robin, ``--repeats`` times after ``--warmup`` untimed rounds; each sample is
``time.perf_counter_ns()`` around the one call:

* ``trackd snapshot``: ``Client.log_artifact``, the default: the file is copied into the media
  folder (``<spool dir>/<client id>.media/``) before the call returns, the cheapest way the
  platform has (the JSON file says which filesystem; on ext4 that is ``copy_file_range``);
* ``trackd by path``: the same with ``artifact_snapshot=False``: only the path is sent;
* ``mlflow``: ``MlflowClient.log_artifact`` into a ``file://`` store (``shutil.copy2``).

The daemon runs in its own process (temporary store and socket). After each call, untimed: the
trackd client flushes (the daemon copies the file into the store) and ``os.sync()`` writes the
dirty pages back, so one sample's writeback does not land in the next. The source, its copies
and the stores sit in one temporary folder (``--dir``, default /tmp): the disk needs about four
times the largest size free.

Run:  .venv/bin/python benchmarks/bench_artifact_snapshot.py [--sizes-mib 100,1024] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _common as C

MIB = 1024 * 1024
VARIANTS = ("trackd snapshot", "trackd by path", "mlflow")


def write_source(path: Path, size: int, seed: int) -> None:
    """``size`` random bytes (a checkpoint does not compress or deduplicate), then read back once."""
    rng = random.Random(seed)
    with open(path, "wb") as file:
        for start in range(0, size, 64 * MIB):
            file.write(rng.randbytes(min(64 * MIB, size - start)))
    with open(path, "rb") as file:
        while file.read(64 * MIB):
            pass


def filesystem(path: Path) -> str:
    result = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def size_parser(doc: str | None, dir_help: str) -> argparse.ArgumentParser:
    """The options of a script that times one operation on large files: sizes, rounds and folder."""
    parser = C.base_parser(doc)
    parser.add_argument("--sizes-mib", default="100,1024", help="file sizes, in MiB (comma-separated)")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per variant and size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per size first")
    parser.add_argument("--dir", default="/tmp", help=dir_help)
    return parser


def sample_sizes(
    args: argparse.Namespace, work: Path, variants: Sequence[str], sample: Callable[[str, Path], int], *, alternate: bool = False,
) -> dict[str, dict[str, list[int]]]:
    """For each --sizes-mib file (written to ``work`` first), ``sample(variant, file)``'s
    nanoseconds per variant: --warmup untimed rounds, then --repeats; ``alternate``: the variants'
    order reverses every other round."""
    samples: dict[str, dict[str, list[int]]] = {}
    for size_mib in (int(text) for text in args.sizes_mib.split(",")):
        source = work / f"model-{size_mib}.bin"
        write_source(source, size_mib * MIB, args.seed)
        times = samples[f"{size_mib} MiB"] = {name: [] for name in variants}
        for round_ in range(args.warmup + args.repeats):
            for name in (variants if not alternate or round_ % 2 == 0 else variants[::-1]):
                elapsed = sample(name, source)
                if round_ >= args.warmup:
                    times[name].append(elapsed)
        source.unlink()
        print(f"  {size_mib} MiB done", flush=True)
    return samples


def report(
    args: argparse.Namespace, samples: dict[str, dict[str, list[int]]], variants: Sequence[str], columns: tuple[str, str],
    title: str, fs: str,
) -> None:
    """Print the table (``columns``: what a row and a sample are) and write the --json file."""
    summary, rows = summarize(samples, variants)
    print()
    C.print_table([columns[0], columns[1], "median ms", "max ms", "MiB/s (median)"], rows, title=title)
    C.write_json(args.json, {**vars(args), "filesystem": fs}, {"summary": summary, "samples_ns": samples})


def summarize(samples: dict[str, dict[str, list[int]]], variants: Sequence[str]) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """Per size and variant: the JSON summary entries, and the table's rows."""
    rows = []
    summary = []
    for size, times in samples.items():
        size_mib = int(size.split()[0])
        for name in variants:
            st = C.summarize_ns(times[name])
            entry = {"size_mib": size_mib, "variant": name, "n": st["n"], "median_ms": st["p50"] / 1e6, "max_ms": st["max"] / 1e6,
                     "median_mib_per_s": size_mib / (st["p50"] / 1e9) if st["p50"] else float("nan")}
            summary.append(entry)
            rows.append([f"{size} {name}", st["n"], f"{entry['median_ms']:.1f}", f"{entry['max_ms']:.1f}",
                         f"{entry['median_mib_per_s']:.0f}"])
    return summary, rows


def main() -> int:
    parser = size_parser(__doc__, "folder for the source file, the spool folder and the stores")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the mlflow variant")
    args = parser.parse_args()
    use_mlflow = not args.no_mlflow and C.have_module("mlflow")
    variants = [name for name in VARIANTS if use_mlflow or name != "mlflow"]

    work = Path(args.dir).resolve() / f"tdsnap-{os.getpid()}"
    work.mkdir(mode=0o700)
    samples: dict[str, dict[str, list[int]]] = {}
    with C.Daemon() as daemon:
        daemon.apply_env(TRACKD_SPOOL_DIR=str(work / "spool"))
        os.environ.update(C.mlflow_env(work / "mlflow"))
        import trackd
        from trackd.client import ClientConfig

        snapshot = trackd.Client(str(daemon.store), config=ClientConfig.from_env())
        by_path = trackd.Client(str(daemon.store), config=ClientConfig(
            socket_path=daemon.socket, autostart=False, spool_dir=work / "spool-by-path", artifact_snapshot=False,
        ))
        clients = {"trackd snapshot": snapshot, "trackd by path": by_path}
        runs = {name: client.create_run("0").info.run_id for name, client in clients.items()}
        calls: dict[str, Any] = {name: (lambda c, r: lambda p: c.log_artifact(r, p))(clients[name], runs[name]) for name in clients}
        if use_mlflow:
            from mlflow import MlflowClient

            mlflow_client = MlflowClient((work / "mlflow").as_uri())
            mlflow_run = mlflow_client.create_run("0").info.run_id
            calls["mlflow"] = lambda p: mlflow_client.log_artifact(mlflow_run, p)
        def sample(name: str, source: Path) -> int:
            os.sync()
            t0 = time.perf_counter_ns()
            calls[name](str(source))
            elapsed = time.perf_counter_ns() - t0
            if name in clients:
                clients[name].flush(timeout=600)
            return elapsed

        try:
            samples = sample_sizes(args, work, variants, sample)
            fs = filesystem(work)
        finally:
            for client in clients.values():
                client.close()
            shutil.rmtree(work, ignore_errors=True)

    report(args, samples, variants, ("size, variant", "calls"), f"one log_artifact call, page cache warm; folder {work.parent} on {fs}", fs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
