"""``make demo``: run the quickstart and the 4-process example, then say where the runs are.

Both examples log into ./mlruns at the repository root (TRACKD_TRACKING_URI is set to it for them,
so a MLFLOW_TRACKING_URI in your shell does not send them elsewhere). The first example starts the
per-user trackd daemon if none is running; it exits by itself after 10 minutes without clients.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trackd

REPO = Path(__file__).resolve().parent.parent
STORE = REPO / "mlruns"


def run_example(name: str, *args: str) -> list[str]:
    """Run ``examples/<name>`` from the repository root; return its stdout lines."""
    env = {**os.environ, "TRACKD_TRACKING_URI": str(STORE)}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=False,
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        raise SystemExit(f"examples/{name} failed with exit code {result.returncode}")
    return result.stdout.splitlines()


def main() -> None:
    print("1. examples/quickstart.py: MLflow's quickstart, written with trackd")
    quickstart_id = run_example("quickstart.py")[-1]
    client = trackd.Client(STORE)
    run = client.get_run(quickstart_id)
    foo = client.get_metric_history(quickstart_id, "foo")
    print(f"   run {quickstart_id}: {run.info.status}, params {run.data.params}, "
          f"{len(foo)} values of 'foo', artifacts {[a.path for a in client.list_artifacts(quickstart_id)]}")

    print("2. examples/distributed.py: 4 processes (RANK=0..3) logging into one run")
    lines = run_example("distributed.py")
    distributed_id = lines[0]
    for line in lines[1:]:
        print(f"   {line}")
    client.close()

    print()
    print(f"Run ids:  {quickstart_id} (quickstart)")
    print(f"          {distributed_id} (4 processes)")
    print(f"Store:    {STORE}")
    print("View them with MLflow's UI (install it first: .venv/bin/pip install mlflow), from the repository root:")
    print("    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true .venv/bin/mlflow ui --backend-store-uri ./mlruns")
    print("The trackd daemon exits after 10 minutes without clients; to stop it now: .venv/bin/trackd daemon stop")


if __name__ == "__main__":
    main()
