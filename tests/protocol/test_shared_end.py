"""SET_TERMINATED's unless_owned field (protocol 10): optional, a bool, and false when left off (protocols 2 to 9)."""

from __future__ import annotations

from trackd.protocol import SET_TERMINATED, Record, check_record, termination_shared

PROTOCOL_2: Record = (SET_TERMINATED, "run1", 3, 1_700_000_000_000)


def test_an_end_is_shared_only_when_it_says_so() -> None:
    # Protocols 3 to 9 set keep_failure also on an attached rank's exception FAILED: not shared.
    records = {
        "protocol-2": PROTOCOL_2, "protocol-9": (*PROTOCOL_2, True), "not-shared": (*PROTOCOL_2, True, False),
        "shared": (*PROTOCOL_2, True, True), "shared-explicit-status": (*PROTOCOL_2, False, True),
    }
    for record in records.values():
        check_record(record)
    assert {name for name, record in records.items() if termination_shared(record)} == {"shared", "shared-explicit-status"}
