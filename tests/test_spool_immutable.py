"""A delivered spool file that can be neither deleted nor emptied is said each time, one line per file,
not once per process as a file left empty is (``test_spool_undeletable_leftover.py``): it holds
batches delivered already, which `trackd sync` would send again, and its owner must remove it.

The files are made immutable (``chattr +i``: root, on a file system that has the flag, such as
ext4, else skipped): unlink and ftruncate fail with EPERM, as the kernel says for such a file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from helpers import Child, DaemonProcess, child_env, wait_for

# Two stores (a sender each, a spool file each) spool a point while no daemon answers; once told,
# a daemon answers and both flush.
TWO_SENDERS = """
import os, sys, time, trackd
clients = [trackd.Client(root) for root in sys.argv[1:3]]
runs = [client.create_run("0").info.run_id for client in clients]
for client, run_id in zip(clients, runs):
    client.log_metric(run_id, "x", 1.0)
while not all(client.stats()["spooled"] for client in clients):
    time.sleep(0.01)
print("spooled", *runs, flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
for client in clients:
    client.flush(timeout=60)
print("delivered", flush=True)
"""


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """The files the test made immutable, made mutable again after it."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)


def test_each_delivered_spool_file_that_can_be_neither_removed_nor_emptied_is_said(
    tmp_path: Path, socket_path: Path, immutable: list[Path],
) -> None:
    stores = [tmp_path / "one", tmp_path / "two"]
    spool_dir = tmp_path / "spool"
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="0.2")
    with Child(TWO_SENDERS, [*map(str, stores), str(tmp_path / "go")], env) as child:
        wait_for(lambda: child.out or child.process.poll() is not None, 60, message="spooled")
        said = child.out[0].split() if child.out else []
        assert said[:1] == ["spooled"], child.stderr()
        for path in sorted(spool_dir.glob("*.spool")):
            made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if made.returncode != 0:
                pytest.skip(f"cannot make a file immutable here (root, and ext4 or the like): {made.stderr.strip()}")
            immutable.append(path)
        assert len(immutable) == 2
        daemon = DaemonProcess(socket_path).start()
        try:
            (tmp_path / "go").touch()
            assert child.wait(120) == 0, child.stderr()
        finally:
            assert daemon.stop() == 0, daemon.log()
    assert child.out[1:] == ["delivered"], child.stderr()
    err = child.stderr()
    for path in immutable:
        assert err.count(
            f"spool file {path} was delivered but could not be removed (Operation not permitted) nor emptied "
            "(Operation not permitted): it holds events delivered already, which `trackd sync` would send again; remove it."
        ) == 1, err
    assert "sender thread failed" not in err, err
    for store, run_id in zip(stores, said[1:]):
        assert [metric.value for metric in mlflow.MlflowClient(str(store)).get_metric_history(run_id, "x")] == [1.0]
