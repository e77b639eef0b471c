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


def test_rates_count_up_to_now_not_to_the_last_sample() -> None:
    # Status right after a burst said 0.0 events/s: the rate ended at the last once-a-second sample,
    # and a daemon younger than two samples had no rate at all.
    state = ServerState()
    started, _, _ = state.samples[0]
    state.counters.records_received = 5_000
    state.counters.records_written = 4_000
    assert state.rates(now=started + 0.5) == (10_000.0, 8_000.0)
    for second in range(1, 21):  # a quiet daemon, sampled once a second for 20 s
        state.sample(started + second)
    state.counters.records_received += 1_000  # then a burst within the last second
    received, written = state.rates(now=started + 20.5)
    assert received == 1_000 / 10.5 and written == 0.0
