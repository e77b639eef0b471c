"""docs/protocol.md's Limits table states the values trackd.protocol really has.

PROTOCOL_VERSION went to 4 while the table still said 3: someone checking which trackd versions
can talk to each other during an upgrade read the wrong number.
"""

from __future__ import annotations

import re
from pathlib import Path

import trackd.protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
UNITS = {"KiB": 1024, "MiB": 1024 * 1024}
# "| `NAME` | 16 MiB | why |", "| `NAME` | 50 000 | ...", "| `NAME` | 4 bytes | ..."
ROW = re.compile(r"^\| `([A-Z_0-9]+)` \| ([0-9][0-9 ]*)(?: (KiB|MiB))?(?: [a-z]+)? \|")


def documented_limits() -> dict[str, int]:
    text = DOC.read_text(encoding="utf-8").split("## Limits", 1)[1]
    found = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            name, number, unit = match.groups()
            found[name] = int(number.replace(" ", "")) * UNITS.get(unit or "", 1)
    return found


def test_the_limits_table_states_the_code_values() -> None:
    documented = documented_limits()
    assert "PROTOCOL_VERSION" in documented and "MAX_FRAME_SIZE" in documented
    actual = {name: getattr(trackd.protocol, name) for name in documented}
    assert documented == actual
