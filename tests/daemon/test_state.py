"""The daemon's shared state: what status shows stays bounded however many things fail."""

from __future__ import annotations

from trackd.daemon._state import MAX_ERROR_KINDS, OTHER_ERRORS, ServerState


def test_error_kinds_past_the_bound_are_counted_together_and_logged_once() -> None:
    # A kind names its store: a daemon failing on thousands of stores made a status reply with a
    # map of thousands of entries, which the client's decoder refuses past 1 MiB.
    state = ServerState()
    first_seen = [state.count_error(f"The store at /s/{i} cannot be written (No space left on device)") for i in range(150)]
    assert state.count_error("The store at /s/0 cannot be written (No space left on device)") is False
    assert first_seen == [True] * MAX_ERROR_KINDS + [True] + [False] * 49
    assert len(state.error_kinds) == MAX_ERROR_KINDS + 1
    assert state.error_kinds[OTHER_ERRORS] == 50
    assert sum(state.error_kinds.values()) == 151
