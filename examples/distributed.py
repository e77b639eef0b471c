"""One run, four processes: how a launcher and its ranks share a trackd run.

The launcher makes the run id, starts four workers with ``RANK=0..3`` (as torchrun would) and hands
each the id. Every worker calls ``trackd.start_run(run_id=...)``: whichever rank's event reaches
the daemon first creates the run, the others attach to it. Each rank logs its own loss under
``rank{r}/loss`` and one point per step under the shared key ``throughput``; rank 0 also logs the
params and ends the run. When the workers are done, the launcher reads the run back and counts the points.

    .venv/bin/python examples/distributed.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import uuid

import trackd

WORLD_SIZE = 4


def worker(run_id: str, steps: int) -> None:
    """One rank: attach to the shared run and log its metrics."""
    rank = int(os.environ["RANK"])
    with trackd.start_run(run_id=run_id):
        if rank == 0:
            trackd.log_params({"world_size": WORLD_SIZE, "steps": steps, "lr": 0.01})
        for step in range(steps):
            loss = math.exp(-step / steps) * (1 + 0.1 * rank)
            trackd.log_metric(f"rank{rank}/loss", loss, step=step)
            trackd.log_metric("throughput", 1000.0 + rank, step=step)
    # Leaving the block, rank 0 (RANK=0) ends the shared run FINISHED, whichever rank created it;
    # the other ranks only detach. Every rank's points are delivered before its process exits.


def launch(steps: int) -> str:
    """Start the ranks, wait for them, and return the run id."""
    run_id = uuid.uuid4().hex
    workers = []
    for rank in range(WORLD_SIZE):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(WORLD_SIZE)}
        args = [sys.executable, __file__, "--worker", "--run-id", run_id, "--steps", str(steps)]
        workers.append(subprocess.Popen(args, env=env))
    failed = [rank for rank, proc in enumerate(workers) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"ranks {failed} failed; run {run_id} is incomplete")
    return run_id


def report(run_id: str) -> None:
    """Read the run back from ./mlruns and print how many points each key holds."""
    run = trackd.get_run(run_id)
    print(f"run {run_id}: status {run.info.status}, params {dict(sorted(run.data.params.items()))}")
    for key in sorted(run.data.metrics):
        points = trackd.get_metric_history(run_id, key)
        print(f"  {key:<14} {len(points):>6} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="steps each rank logs (default: %(default)s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.run_id, args.steps)
        return
    run_id = launch(args.steps)
    print(run_id)
    report(run_id)


if __name__ == "__main__":
    main()
