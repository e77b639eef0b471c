"""The store_unavailable ErrorReply's message: the daemon builds it, the client reads the store's sentence back."""

from __future__ import annotations

from trackd.protocol import store_unavailable_message, store_unavailable_reason

REASON = "The store at /data/mlruns cannot be written (No space left on device): '/data/mlruns/0/r/metrics/x'."


def test_the_client_reads_back_the_stores_sentence_without_the_count() -> None:
    # Exit quotes it when it gives up, long after the count it was told had changed.
    message = store_unavailable_message(REASON, 1000)
    assert message.startswith(f"{REASON} 1000 events of this client wait")
    assert store_unavailable_reason(message) == REASON


def test_a_message_worded_otherwise_is_quoted_whole() -> None:
    # A daemon of another trackd commit, same protocol version.
    assert store_unavailable_reason("The disk is full.") == "The disk is full."
