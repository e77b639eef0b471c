"""A store file under a kernel lease is written once its holder lets go, as MLflow's open() waits.

A file server on the store's machine (Samba's oplocks, knfsd's delegations) holds kernel leases on
the files its clients have open, and gives one up when the kernel tells it (SIGIO) that another
process opens the file. The store opens its files with O_NONBLOCK (a FIFO planted there must not
block the writer thread), and an O_NONBLOCK open of a leased file fails with EAGAIN instead of
waiting for the holder: a run's end was refused for good ("Resource temporarily unavailable") and
the run stayed RUNNING. The open is now tried again until the holder lets go.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from store_helpers import RUN_ID, metrics, writer_with_run

from trackd.store import StoreWriter, Termination, WriteBatch

pytestmark = pytest.mark.timeout(60)

# Holds a write lease on a file (argv[1]) and lets go when the kernel says another process opens it.
_HOLDER = """
import fcntl, os, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
def let_go(*_):
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    print("let go", flush=True)
signal.signal(signal.SIGIO, let_go)
try:
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
except OSError as exc:
    print(f"no lease: {exc}", flush=True)
    sys.exit(0)
print("leased", flush=True)
time.sleep(30)
"""


@contextmanager
def _leased(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding a write lease on ``path`` while the block runs (skips where leases are not
    available: another owner's file without CAP_LEASE, a filesystem without them)."""
    with subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            first = holder.stdout.readline().strip()
            if first != "leased":
                pytest.skip(f"no kernel lease on {path}: {first}")
            yield holder
        finally:
            holder.kill()


def _let_go(holder: subprocess.Popen[str]) -> str:
    assert holder.stdout is not None
    return holder.stdout.readline().strip()


def test_a_run_end_waits_for_the_lease_on_its_meta_yaml(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    writer, run = writer_with_run(root)
    writer.close()
    writer = StoreWriter(root)
    with _leased(run / "meta.yaml") as holder:
        # This used to be [WriteFailure(... 'Resource temporarily unavailable' ...)]: the end lost.
        assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, 5)])) == []
        assert _let_go(holder) == "let go"
    writer.close()
    assert MlflowClient(tracking_uri=str(root)).get_run(RUN_ID).info.status == "FINISHED"


def test_points_wait_for_the_lease_on_their_metric_file(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    writer, run = writer_with_run(root)
    assert writer.write(metrics("loss", (1, 0.5, 0))) == []
    writer.close()  # (a write lease needs the file open nowhere else)
    writer = StoreWriter(root)
    with _leased(run / "metrics" / "loss") as holder:
        assert writer.write(metrics("loss", (2, 0.25, 1))) == []
        assert _let_go(holder) == "let go"
    writer.close()
    history = MlflowClient(tracking_uri=str(root)).get_metric_history(RUN_ID, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.25)]


def test_a_fifo_is_still_refused_at_once(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    writer, run = writer_with_run(root)
    (run / "meta.yaml").unlink()
    os.mkfifo(run / "meta.yaml")
    writer.close()
    [failure] = StoreWriter(root).write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, 5)]))
    assert "it is a FIFO, expected a regular file" in failure.message
