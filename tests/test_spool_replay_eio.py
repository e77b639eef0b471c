"""A read error partway through resending a spool file (EIO, ENOMEM: the disk or the memory fails
for a while) keeps the file whole for the next attempt, as an error at its open does: it was cut
back to the last batch read, as if damaged, and every event after it was lost ("could not be read
back ... and are lost").

The error is the kernel's: a seccomp filter in the real client process fails its read(2) calls
longer than the spool reader's first one (the frame that follows the Hello is megabytes long, so
its read is too), with EIO. No device mapper or fault injection is available here to fail the disk
itself; the filter cannot be lifted, so the process exits still failing and `trackd sync` (another
process) delivers the file it kept.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, wait_for
from mlflow import MlflowClient

from trackd.client._spool import SPOOL_READ_SIZE, SpoolReader

# Spools 100 points of "x" (one small batch), then 200 tags of 8,000 random characters in one
# log_batch (one batch of a megabyte and more, which does not compress), with no daemon; then fails every read(2) longer than
# SPOOL_READ_SIZE with EIO in every thread (seccomp, x86_64), and closes once told to.
SPOOLER = """
import base64, ctypes, errno, os, struct, sys, time, trackd
from mlflow.entities import RunTag
store, flags = sys.argv[1], sys.argv[2]
client = trackd.Client(store)
run_id = client.create_run("0").info.run_id
for step in range(100):
    client.log_metric(run_id, "x", float(step), step=step)
while client.stats()["spooled"] < 100:
    time.sleep(0.01)
client.log_batch(run_id, tags=[RunTag(f"t{index}", base64.b64encode(os.urandom(6000)).decode()) for index in range(200)])
while client.stats()["spooled"] < 300:
    time.sleep(0.01)
print("run", run_id, flush=True)
while not os.path.exists(os.path.join(flags, "filter")):
    time.sleep(0.02)

class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
ALLOW, ERRNO, LD, JEQ, JGT, RET = 0x7FFF0000, 0x00050000, 0x20, 0x15, 0x25, 0x06
program = [
    (LD, 0, 0, 4), (JEQ, 0, 5, 0xC000003E),  # seccomp_data.arch: x86_64, else allowed
    (LD, 0, 0, 0), (JEQ, 0, 3, 0),  # .nr: read(2)
    (LD, 0, 0, 32), (JGT, 0, 1, READ_SIZE),  # .args[2] (count, low half): longer than the reader's chunk
    (RET, 0, 0, ERRNO | errno.EIO), (RET, 0, 0, ALLOW),
]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
libc = ctypes.CDLL(None, use_errno=True)
# PR_SET_NO_NEW_PRIVS, then seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC): every thread.
if libc.prctl(38, 1, 0, 0, 0) or libc.syscall(317, 1, 1, ctypes.byref(Program(len(program), ctypes.addressof(code)))):
    print("no seccomp", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(0)
print("filtered", flush=True)
while not os.path.exists(os.path.join(flags, "close")):
    time.sleep(0.02)
try:
    client.flush(timeout=5)
    print("flushed", flush=True)
except Exception as exc:
    print("flush raised", type(exc).__name__, exc, flush=True)
client.close()
print("closed", flush=True)
""".replace("READ_SIZE", str(SPOOL_READ_SIZE))


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64", reason="the seccomp filter is x86_64 Linux's")
@pytest.mark.timeout(240)
def test_an_io_error_partway_through_a_resend_keeps_the_spool_file_for_trackd_sync(
    socket_path: Path, store: Path, tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    env = child_env(
        socket_path, TRACKD_SPOOL_DIR=str(spool), TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.5",
        TRACKD_TRACKING_URI=str(store),
    )
    with Child(SPOOLER, [str(store), str(tmp_path)], env) as child:
        wait_for(lambda: any(line.startswith("run ") for line in child.out) or child.process.poll() is not None, 60, message="spooled")
        run_id = next((line.split()[1] for line in child.out if line.startswith("run ")), None)
        assert run_id is not None, child.stderr()
        (path,) = spool.glob("*.spool")
        with SpoolReader(open(path, "rb"), path) as reader:
            sizes = [len(frame) for _, _, frame in reader.batches()]
        # The read that fails is the big frame's, after the small batch was read and sent.
        assert len(sizes) >= 2 and sizes[0] < SPOOL_READ_SIZE // 2 and sizes[1] > 2 * SPOOL_READ_SIZE, sizes
        (tmp_path / "filter").touch()
        wait_for(lambda: "filtered" in child.out or child.process.poll() is not None, 60, message="the filter")
        if "filtered" not in child.out:
            pytest.skip(f"no seccomp filter here: {child.out}")
        daemon = DaemonProcess(socket_path).start()
        try:
            # The new code says the file is kept; the old one cut it back (after saying "reconnected").
            size = path.stat().st_size
            wait_for(lambda: "read spool file" in child.stderr() or path.stat().st_size < size, 60, message="the read error")
            (tmp_path / "close").touch()
            assert child.wait(120) == 0, child.stderr()
            err = child.stderr()
            assert "lost" not in err and "Input/output error" in err and "stay in it" in err, err
            assert err.count("could not read spool file") == 1, err
            assert [path] == list(spool.glob("*.spool")), err
            sync = subprocess.run(
                [sys.executable, "-m", "trackd", "sync"], env=child_env(socket_path, TRACKD_SPOOL_DIR=str(spool)),
                capture_output=True, text=True, timeout=120,
            )
            assert sync.returncode == 0, sync.stderr
            mlflow = MlflowClient(str(store))
            assert sorted(m.step for m in mlflow.get_metric_history(run_id, "x")) == list(range(100))
            assert len([key for key in mlflow.get_run(run_id).data.tags if key.startswith("t")]) == 200, err
            assert not list(spool.glob("*.spool"))
        finally:
            assert daemon.stop() == 0, daemon.log()
