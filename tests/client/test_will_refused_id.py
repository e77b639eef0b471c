"""A run id the protocol refuses never sticks in what the daemon is told a process owns.

``Will._tell`` recorded the set as told before it made the ``OwnedRuns`` event, whose checks
refuse a run id that is not text. Such an id, owned for an instant (``start_run`` owns the run
before it queues its creation), told by the sender thread in that instant, raised, and stayed
recorded: every later handshake told it again and failed, so the process never connected again
and spooled everything (a code review's repro: "sender thread failed; retrying" eleven times,
``flush()`` timing out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd.client._will import Will
from trackd.errors import LocalProtocolError

RUN = "a" * 32


def test_an_id_the_event_refuses_is_not_taken_as_told(tmp_path: Path) -> None:
    will = Will(tmp_path, "c" * 32)
    will.add(RUN)
    will.add(12345)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        will.ahead_news()
    will.discard(12345)  # type: ignore[arg-type]
    news = will.ahead_news()
    assert news is not None and list(news.run_ids) == [RUN]
    assert will.ahead_news() is None  # told now
