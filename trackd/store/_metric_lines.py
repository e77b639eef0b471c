"""A metric file's lines, both ways: written by the daemon as MLflow's FileStore writes them, and
read back where MLflow's reader accepts them.

``{timestamp} {value} {step}`` a line (spec §3.3; what MLflow's reader accepts: §5). The writer formats
them in C (orjson) with Python's repr where the two may differ (``format_metric_lines``,
``format_metric_files``: the daemon's innermost loop); the reader parses every line as
``_get_metric_from_line`` does (``parse_metric_lines``), or reads only the value MLflow shows for a
run (``latest_metric_value``). The other files of the store (meta.yaml, params, tags) and the one way
a file is replaced are ``_format.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import CorruptStoreFile
from ._entities import Metric
from ._format import decode_text, orjson_dumps

# Where orjson's text for a float may differ from Python's repr, and so from what MLflow writes:
# nan and inf become "null"; below 1e-4 orjson stays positional ("0.00001" where repr writes
# "1e-05"); and exponents are written by other rules ("1.5e-7", repr "1.5e-07"). A chunk holding
# "n", "e" or "0.0000" is formatted with repr; everywhere else both print the same shortest
# round-trip digits (tests/store/test_format.py compares them over every kind of double).
# Timestamps and steps are ints, so these only match a value; "0.0000" also matches "10.00001",
# which only sends that chunk the slow way. One-byte needles are a memchr (~0.6 ns a point), a
# longer one a scan (~20 ns), a regex ~450 ns: more than the formatting it would save.
# _format_chunk spells the three checks out (a generator over a tuple of needles costs ~0.5 us).
# [[ts,value,step],[ts,value,step]] -> "ts value step\n ts value step\n\n": "[" deleted, "]" to
# newline, "," to space; then the space that began each later line goes and the last newline.
_TO_LINES = bytes.maketrans(b"],", b"\n ")
# Points formatted per orjson call: a chunk that holds a value orjson prints differently is
# formatted with repr, so a rare 1e-05 costs its chunk, not the whole write.
_FORMAT_CHUNK = 512


# The bytes of a token latest_metric_value reads without parse_metric_lines: digits, letters (nan,
# inf, exponents), "." "_" "+" "-"; ASCII, so no byte of them is whitespace or a line break.
_METRIC_TOKEN_BYTES = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._+-"
_THREE_FIELDS_LINE = b"  \n"


def format_metric_lines(points: Sequence[tuple[int, float, int]]) -> bytes:
    """Lines ``"{ts} {value} {step}\\n"`` as FileStore._log_run_metric writes them, joined for one write().

    MLflow writes ``str(float)``; ``repr`` of a Python float is the same text (``7.0``, ``1e+20``,
    ``nan``, ``inf``). This is the daemon's innermost loop, and repr of a float costs ~0.4 us (it was
    a third of the daemon's time per point), so the lines are made by orjson in C, several times
    faster, and a chunk holding a value that orjson may print differently (see above) is
    formatted with repr instead. Values must be floats (orjson would print an int value 7 as "7",
    MLflow "7.0": the applier converts them) and timestamps and steps int64 (the protocol checks).
    """
    dumps = orjson_dumps()
    if len(points) <= _FORMAT_CHUNK:
        # Most writes: a file's few points (one call per file per write, so no list and no join).
        return _format_chunk(dumps, points)
    return b"".join([_format_chunk(dumps, points[i : i + _FORMAT_CHUNK]) for i in range(0, len(points), _FORMAT_CHUNK)])


def format_metric_files(point_lists: Sequence[Sequence[tuple[int, float, int]]]) -> list[bytes]:
    """format_metric_lines() of every file of a write, with one orjson call for all of them.

    Points round-robin over 10,000 files leave a write a few points per file, and one call per
    file cost more in Python than its write() in the kernel. orjson prints the lists of points as
    ``[[[ts,value,step],...],[[...]]]``, where ``]],[[`` only ever stands between two files: made
    ``]`` and a NUL first, then translated as in format_metric_lines, each file's text ends in its
    last point's newline and the text splits per file at the NULs, each piece ready to write
    (splitting at the blank line between files instead, and adding back each file's last newline,
    cost ~140 ns a file more: a bytes object made twice). A file whose text
    holds a value where orjson and repr may differ is formatted on its own, as format_metric_lines
    would. Files of many points each (over 64 on average) are formatted one by one, and so are
    all of them if one has no points (its empty text would not split apart).
    """
    if not point_lists:
        return []
    if len(point_lists) * _FORMAT_CHUNK < sum(map(len, point_lists)) * 8 or not all(point_lists):
        # Files of many points each: their chunks fit in the CPU's cache, and one text of the
        # whole write (megabytes, translated, split and copied again) would not.
        return [format_metric_lines(points) for points in point_lists]
    try:
        text = orjson_dumps()(point_lists)
    except TypeError:  # an int beyond 64 bits somewhere: each file on its own
        return [format_metric_lines(points) for points in point_lists]
    # Without the outer brackets and the last file's closing one, so that the text ends as each
    # file's does before the NUL: in its last point's "]".
    pieces = text[1:-2].replace(b"]],[[", b"]\x00[").translate(_TO_LINES, b"[").replace(b"\n ", b"\n").split(b"\x00")
    if b"n" in text or b"e" in text or b"0.0000" in text:
        return [
            format_metric_lines(points) if b"n" in piece or b"e" in piece or b"0.0000" in piece else piece
            for piece, points in zip(pieces, point_lists)
        ]
    return pieces


def _format_chunk(dumps: Callable[[Any], bytes], chunk: Sequence[tuple[int, float, int]]) -> bytes:
    if not chunk:
        return b""
    try:
        text = dumps(chunk)
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits; repr says it as MLflow would
        return _format_with_repr(chunk)
    if b"n" in text or b"e" in text or b"0.0000" in text:  # where orjson and repr may differ
        return _format_with_repr(chunk)
    return text.translate(_TO_LINES, b"[").replace(b"\n ", b"\n")[:-1]


def _format_with_repr(points: Iterable[tuple[int, float, int]]) -> bytes:
    return "".join(
        [f"{ts} {value if type(value) is float else float(value)!r} {step}\n" for ts, value, step in points]
    ).encode("ascii")


def parse_metric_lines(key: str, data: bytes, path: str, run_id: str | None = None) -> list[Metric]:
    """Every line of a metric file, in file order, accepted exactly where MLflow accepts it.

    _get_metric_from_line: ``metric_line.strip().split(" ")`` must give 2, 3 or 5 fields
    (``ts value``, ``ts value step``, ``ts value step dataset_name dataset_digest``), then
    ``int(ts)``, ``float(value)``, ``int(step)``. CRLF and a last line without "\\n" are fine.
    Each Metric names ``run_id``, the run whose file it is, as MLflow 3's do; a line of 5 fields
    gives its dataset's name and digest.
    """
    text = decode_text(data, path)
    metrics: list[Metric] = []
    append = metrics.append
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.strip().split(" ")
        count = len(parts)
        try:
            if count == 3:
                append(Metric(key, float(parts[1]), int(parts[0]), int(parts[2]), None, None, None, run_id))
            elif count == 2:
                append(Metric(key, float(parts[1]), int(parts[0]), 0, None, None, None, run_id))
            elif count == 5:
                append(Metric(key, float(parts[1]), int(parts[0]), int(parts[2]), None, parts[3], parts[4], run_id))
            else:
                raise CorruptStoreFile(
                    f"Metric file {path!r} line {number} is malformed: found {count} "
                    f"space-separated fields in {line!r}, expected 2, 3 or 5 "
                    f"('timestamp value step')."
                )
        except ValueError:
            raise CorruptStoreFile(
                f"Metric file {path!r} line {number} is malformed: found {line!r}, expected an "
                f"int timestamp, a float value and an int step."
            ) from None
    return metrics


def latest_metric_value(key: str, data: bytes, path: str) -> float:
    """The value MLflow shows for a run, of a metric file's ``data``: that of
    ``max(lines, key=(step, timestamp, value))``, the first such line of equal ones (NaN included,
    as Python's max compares those tuples); CorruptStoreFile as parse_metric_lines, or if empty.

    get_run and search_runs read every point of every metric file for it, and a Metric made per
    point took two thirds of their time (search_runs of 20 runs of 100,000 points: 3.0 s, now
    0.9 s). A file of ``ts value step`` lines of plain ASCII tokens (every file trackd writes, and
    MLflow's without a dataset) is read as tokens, converted and compared in C; any other file, or
    a token int() or float() refuses, goes through parse_metric_lines, which raises as before.
    """
    # What is left of the file without its tokens' bytes: when each line is three tokens, two
    # spaces and a newline per line (none after a last line that has none), and no other byte.
    shape = data.translate(None, _METRIC_TOKEN_BYTES)
    full_lines, rest = divmod(len(shape), 3)
    lines = full_lines + (rest == 2)
    last = b"  " if rest == 2 else b""
    if lines and shape == _THREE_FIELDS_LINE * full_lines + last and len(tokens := data.split()) == 3 * lines:
        # Two spaces a line leave at most three non-empty tokens on it, so 3 per line in all means
        # three on each, one space apart: the fields _get_metric_from_line's strip().split(" ")
        # gives, which bytes.split() gives in file order (a space at either end of a line, or
        # beside another, makes an empty field there, and the count falls short).
        try:
            return max(zip(map(int, tokens[2::3]), map(int, tokens[0::3]), map(float, tokens[1::3])))[2]
        except ValueError:
            pass
    points = parse_metric_lines(key, data, path)
    if not points:
        # _get_metric_from_file raises "Metric '<key>' is malformed. No data found."
        raise CorruptStoreFile(f"Metric file {path!r} is empty, expected at least one 'timestamp value step' line.")
    return max((m.step, m.timestamp, m.value) for m in points)[2]
