"""What the tags of one record may hold: a run's at its creation, an experiment's in CreateExperiment.

Each tag is checked by MLflow's rules (key, value length) where it is taken; these bounds are the
wire's. Such tags travel whole in one record (or request), in one frame, which the sender cannot
split as it splits a batch of separate records: a record past MAX_FRAME_SIZE was refused whole
when it was encoded (a run's creation, and with it the run and all its points), and a request
past it stopped the sender thread's connection, retried for ever.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._words import counted
from ..errors import InvalidArgument
from ..protocol import MAX_TAGS_PER_RECORD, MAX_TAGS_SIZE, MAX_TEXT_LENGTH

# What to do with a run's tags that do not fit its creation.
RUN_TAGS_INSTEAD = "set the others once the run exists (set_tag, set_tags or log_batch send each tag on its own)"


def require_tags_fit(tags: Mapping[str, str], owner: str, instead: str) -> None:
    """Refuse ``tags`` (checked str keys and values) past MAX_TAGS_PER_RECORD or MAX_TAGS_SIZE.

    ``owner`` ("a new run") and ``instead`` (what to do, a clause) go in the message.
    """
    if len(tags) > MAX_TAGS_PER_RECORD:
        raise InvalidArgument(
            f"Invalid tags for {owner}: got {len(tags)}, and at most {MAX_TAGS_PER_RECORD} tags travel with it; {instead}."
        )
    characters = sum(map(len, tags)) + sum(map(len, tags.values()))
    if characters * 4 <= MAX_TAGS_SIZE:  # a character is at most 4 bytes in UTF-8
        return
    size = sum(len(text.encode("utf-8")) for text in (*tags, *tags.values()))
    if size > MAX_TAGS_SIZE:
        raise InvalidArgument(
            f"Invalid tags for {owner}: their keys and values hold {size} bytes in UTF-8 together ({counted(len(tags), 'tag')}), "
            f"and at most {MAX_TAGS_SIZE} bytes ({MAX_TAGS_SIZE // 2**20} MiB) travel with it in one message to "
            f"the daemon; {instead}."
        )


def require_tag_value_fits(key: str, value: str) -> str:
    """``value`` of run tag ``key`` (or a run name), refused past MAX_TEXT_LENGTH characters.

    MLflow's set_tag and create_run store a tag of any length; trackd's records carry at most
    MAX_TEXT_LENGTH characters in one value, and a longer one would cost the whole batch it travels in.
    """
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidArgument(
            f"Invalid value for tag {key!r}: it has {len(value)} characters, and trackd carries at most "
            f"{MAX_TEXT_LENGTH} in one tag value to its daemon (MLflow's file store takes any length through "
            "set_tag; its log_batch truncates to 8000); expected at most that many, or an artifact (log_text) "
            "for longer text."
        )
    return value
