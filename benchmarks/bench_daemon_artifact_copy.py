"""How long does the daemon's copy of a large artifact into the store take, now that it tries
``copy_file_range`` first, next to the ``sendfile`` it used before?

An artifact over 8 MiB travels as a path, and the daemon copies the file (the client's copy at
the call, in its media folder) into a staging folder of the store on a copier thread
(``trackd.store.ArtifactCopy.run``), before the write renames it into place. Each sample is
``time.perf_counter_ns()`` around one ``ArtifactCopy.run``, in this process (the copier thread's
work, without the daemon around it), for each ``--sizes-mib`` file (random bytes, read once
first so the page cache is warm):

* ``copy_file_range`` (now): ``ArtifactCopy.ways`` as the daemon has them; a reflink on XFS or
  btrfs (same filesystem), an in-kernel copy on ext4;
* ``sendfile`` (before): ``ways`` set to sendfile, then reads and writes, as the daemon copied
  until 2026-11-27.

The variants alternate (the order swaps each round), ``--repeats`` times after ``--warmup``
untimed rounds; after each sample, untimed, the copy is removed and ``os.sync()`` writes dirty
pages back, so one sample's writeback does not land in the next. The source and the store sit
in ``--dir`` (default /tmp): give it a folder on XFS (a loop image: ``mkfs.xfs -m reflink=1``)
to see the reflink; the disk needs about three times the largest size free.

Run:  .venv/bin/python benchmarks/bench_daemon_artifact_copy.py [--sizes-mib 100,1024] [--repeats 5] [--dir /mnt/xfs] [--json out.json]
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

from bench_artifact_snapshot import filesystem, report, sample_sizes, size_parser

NOW, BEFORE = "copy_file_range", "sendfile"


def copy_once(store: Path, source: Path, variant: str) -> int:
    """Nanoseconds one ArtifactCopy.run takes; the copy is removed after (untimed)."""
    from trackd.store import ArtifactCopy
    from trackd.store._artifact_copies import READ_WRITE, SENDFILE

    copy = ArtifactCopy(str(store), "0" * 32, "model.bin", str(source))
    if variant == BEFORE:
        copy.ways = (SENDFILE, READ_WRITE)
    t0 = time.perf_counter_ns()
    finished = copy.run(threading.Event())
    elapsed = time.perf_counter_ns() - t0
    assert finished and copy.copied == source.stat().st_size, f"{variant}: copied {copy.copied} bytes"
    copy.discard()
    os.sync()
    return elapsed


def main() -> int:
    args = size_parser(__doc__, "folder for the source file and the store").parse_args()
    work = Path(args.dir).resolve() / f"tdcopy-{os.getpid()}"
    work.mkdir(mode=0o700)
    store = work / "mlruns"
    try:
        samples = sample_sizes(args, work, (NOW, BEFORE), lambda variant, source: copy_once(store, source, variant), alternate=True)
        fs = filesystem(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    title = f"the daemon's copy into the store (ArtifactCopy.run), page cache warm; {work.parent} on {fs}"
    report(args, samples, (NOW, BEFORE), ("size, way", "copies"), title, fs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
