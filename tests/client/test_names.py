"""Ids, run names and the temp directory a client chooses without the modules that usually do it."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path

import pytest

import trackd._paths
from trackd._paths import temp_directory
from trackd.client._names import random_id, random_run_name
from trackd.store import validate_run_id


def test_random_ids_are_uuid4_hex_as_mlflow_makes_them() -> None:
    ids = [random_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert validate_run_id(value) == value


def test_random_run_names_are_adjective_noun_number_and_vary() -> None:
    names = [random_run_name() for _ in range(500)]
    assert all(re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", name) for name in names)
    assert len({name.split("-")[0] for name in names}) > 10
    assert len({name.split("-")[1] for name in names}) > 10


def test_random_run_names_come_from_as_many_as_mlflows_so_a_sweep_rarely_repeats_one() -> None:
    # 32 adjectives x 32 nouns x 1,000: a sweep of 1,000 runs had two of the same name about two
    # times in five (MLflow's 159 x 123 x 1,000: one in forty). 5,000 names show every word of a
    # list of 128 but for about 0.0003 of one.
    names = [random_run_name() for _ in range(5000)]
    adjectives, nouns = ({name.split("-")[part] for name in names} for part in (0, 1))
    assert len(adjectives) * len(nouns) * 1000 >= 15_000_000
    assert max(map(len, names)) <= 20  # MLflow's longest generated name


@pytest.mark.parametrize("variable", ["TMPDIR", "TEMP", "TMP"])
def test_temp_directory_follows_the_variables_tempfile_reads(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # both keep their first answer
    monkeypatch.setattr(trackd._paths, "_temp_directory", None)
    assert temp_directory() == tempfile.gettempdir() == str(tmp_path)


def test_temp_directory_skips_what_is_not_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (Not a read-only folder: these tests may run as root, who can write anywhere.)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv("TMPDIR", str(a_file))
    monkeypatch.setenv("TEMP", str(tmp_path / "missing"))
    monkeypatch.setenv("TMP", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(trackd._paths, "_temp_directory", None)
    assert temp_directory() == tempfile.gettempdir() == str(tmp_path)


def test_temp_directory_keeps_its_first_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A process that changes $TMPDIR later still finds its daemon's socket where it looked first.
    monkeypatch.setattr(trackd._paths, "_temp_directory", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    first = temp_directory()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("TMPDIR", str(other))
    assert temp_directory() == first == str(tmp_path)
