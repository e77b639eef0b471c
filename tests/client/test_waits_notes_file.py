"""The notes of exit waits said on each stderr (``<socket>.waits``) never silence a wait they do not cover.

A note from before a reboot (its socket folder under $HOME or /var/tmp survives one) held a
``time.monotonic()`` value of the last boot, which lay in the future of the next: every exit wait on
a stderr of the same inode (a log file truncated, not replaced) went unsaid. A FIFO at that path
held the exit for ever. Each check runs in a child whose stderr is a real file, as ``warn`` sees it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import inherited_env

# argv: the notes file, the seconds of the wait; prints whether the wait is still to be said, then
# waits for its stdin to close (a note lasts while its process runs: it still waits).
CHECK = """
import os, sys
from pathlib import Path
from trackd.client._family_notice import wait_unsaid_on_stderr
print(wait_unsaid_on_stderr(Path(sys.argv[1]), float(sys.argv[2])), flush=True)
sys.stdin.read()
"""


def _unsaid(notes: Path, stderr: Path, seconds: float = 2.0) -> str:
    with _waiting(notes, stderr, seconds) as said:
        return said


@contextlib.contextmanager
def _waiting(notes: Path, stderr: Path, seconds: float = 2.0) -> Iterator[str]:
    """A child's check of a wait of ``seconds``: whether it is to be said; the child runs for the block."""
    with stderr.open("a") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHECK, str(notes), str(seconds)], env=inherited_env(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    assert child.stdin is not None and child.stdout is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == 0, stderr.read_text()


def test_a_note_of_the_last_boot_does_not_silence_a_wait(tmp_path: Path) -> None:
    stderr, notes = tmp_path / "train.log", tmp_path / "d.sock.waits"
    stderr.touch()
    status = os.stat(stderr)
    # Said 30 days into the last boot, with a monotonic clock: the wait is said again here.
    notes.write_text(f"{status.st_dev} {status.st_ino} 2592000.0\n")
    with _waiting(notes, stderr) as said:
        assert said == "True"
        # The note is now this wait's, and covers a second process's wait on the same stderr.
        assert _unsaid(notes, stderr) == "False"


def test_a_fifo_at_the_notes_path_costs_a_line_not_the_exit(tmp_path: Path) -> None:
    stderr, notes = tmp_path / "train.log", tmp_path / "d.sock.waits"
    stderr.touch()
    os.mkfifo(notes)
    assert _unsaid(notes, stderr) == "True"  # it hung, opening and reading the FIFO
