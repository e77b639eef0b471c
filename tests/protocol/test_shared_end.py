"""SET_TERMINATED's unless_owned field (protocol 10): optional, a bool, and false when left off (protocols 2 to 9)."""

from __future__ import annotations

import pytest

from trackd.errors import LocalProtocolError
from trackd.protocol import SET_TERMINATED, Record, check_record, termination_shared

PROTOCOL_2: Record = (SET_TERMINATED, "run1", 3, 1_700_000_000_000)


@pytest.mark.parametrize(
    ("record", "shared"),
    [
        (PROTOCOL_2, False),
        # Protocols 3 to 9 set keep_failure also on an attached rank's exception FAILED: not shared.
        ((*PROTOCOL_2, True), False),
        ((*PROTOCOL_2, True, False), False),
        ((*PROTOCOL_2, True, True), True),
        ((*PROTOCOL_2, False, True), True),
    ],
    ids=["protocol-2", "protocol-9-keep-failure", "not-shared", "shared", "shared-explicit"],
)
def test_an_end_is_shared_only_when_it_says_so(record: Record, shared: bool) -> None:
    check_record(record)
    assert termination_shared(record) is shared


@pytest.mark.parametrize("value", [1, None, "true"])
def test_an_unless_owned_that_is_not_a_bool_is_refused(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="set terminated record field 'unless_owned' must be true or false"):
        check_record((*PROTOCOL_2, True, value))


def test_a_seventh_field_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="has 6 fields; expected 5"):
        check_record((*PROTOCOL_2, True, True, True))
