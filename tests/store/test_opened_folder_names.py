"""check_opened_folder: a folder the kernel names in other words than the path is still that folder.

The writer opens a run folder (or a metric folder) by path after confining it, then asks the kernel
where the descriptor is (/proc/self/fd) to refuse a folder above it swapped for a link meanwhile.
That name is not always the path's text: a case-insensitive filesystem (ext4 casefold, vfat, CIFS)
names "mlruns" what the user typed as "MLRuns", and a bind mount unmounted since names the folder
from that mount's root. Comparing the text alone refused every param and tag write of such a
store as "a folder above it was replaced meanwhile". Neither casefold nor vfat mounts here
(CONFIG_UNICODE, vfat are not in this kernel), so the bind mount makes the kernel's name differ.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from trackd.errors import StoreError
from trackd.store._confinement import check_opened_folder


@pytest.fixture
def run_folder_opened_through_a_bind_mount(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """(descriptor, run folder, store root): the run folder opened through a bind mount of the
    store over itself, which is then unmounted: the same folder, named from the mount's root."""
    root = tmp_path / "mlruns"
    run_folder = root / "0" / "r1"
    run_folder.mkdir(parents=True)
    bound = subprocess.run(["mount", "--bind", str(root), str(root)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount a folder here (needs root or CAP_SYS_ADMIN): {bound.stderr.strip()}")
    try:
        fd = os.open(run_folder, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True, capture_output=True)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") != str(run_folder)  # the case this guards
        yield fd, run_folder, root
    finally:
        os.close(fd)


def test_a_folder_the_kernel_names_differently_is_taken_when_it_is_the_folder_at_its_path(
    run_folder_opened_through_a_bind_mount: tuple[int, Path, Path],
) -> None:
    # This used to raise StoreError: "the folder opened is '/0/r1', not '.../mlruns/0/r1'".
    fd, run_folder, root = run_folder_opened_through_a_bind_mount
    check_opened_folder(fd, str(run_folder), str(root), os.path.realpath(root))


def test_a_folder_the_kernel_names_differently_is_refused_when_another_is_at_its_path(
    run_folder_opened_through_a_bind_mount: tuple[int, Path, Path],
) -> None:
    fd, run_folder, root = run_folder_opened_through_a_bind_mount
    run_folder.rename(run_folder.with_name("r1.moved"))
    run_folder.mkdir()
    with pytest.raises(StoreError, match="a folder above it was replaced meanwhile"):
        check_opened_folder(fd, str(run_folder), str(root), os.path.realpath(root))
