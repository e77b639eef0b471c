"""CREATE_RUN's owner field (protocol 8): optional, a bool, and false when left off (protocols 6 and 7)."""

from __future__ import annotations

import pytest

from trackd.errors import LocalProtocolError
from trackd.protocol import CREATE_RUN, Record, attach_creation, check_record, create_run_owner

LEGACY: Record = (CREATE_RUN, "run1", "0", "alice", "run-name", 1_700_000_000_000, {"mlflow.user": "alice"})


@pytest.mark.parametrize(("record", "owner"), [(LEGACY, False), ((*LEGACY, False), False), ((*LEGACY, True), True)])
def test_a_create_is_the_owners_only_when_it_says_so(record: Record, owner: bool) -> None:
    check_record(record)
    assert create_run_owner(record) is owner


@pytest.mark.parametrize("value", [1, None, "true"])
def test_an_owner_that_is_not_a_bool_is_refused(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="create run record field 'owner' must be true or false"):
        check_record((*LEGACY, value))


@pytest.mark.parametrize("record", [LEGACY, (*LEGACY, True)])
def test_attach_creation_is_the_same_create_from_a_process_that_does_not_own_the_run(record: Record) -> None:
    attached = attach_creation(record)
    check_record(attached)
    assert attached[:7] == LEGACY and not create_run_owner(attached)
