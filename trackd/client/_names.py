"""Random ids and run names: run and client ids as uuid4 hex, names in MLflow's ``adjective-noun-NNN`` style.

Both come from os.urandom, without the uuid and random modules: a client process loads neither
(~0.4 MB of RSS and ~1 ms of import for uuid and the platform module it pulls in; random's
hashing and bisect modules), which short processes and the client's memory target count.
"""

from __future__ import annotations

import os

_ADJECTIVES = (
    "able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "fast", "gentle", "grand",
    "happy", "keen", "kind", "lucky", "merry", "neat", "nimble", "proud", "quick", "quiet", "sharp", "shy",
    "silent", "smooth", "steady", "swift", "tidy", "vivid", "warm", "wise",
)
_NOUNS = (
    "ant", "bat", "bear", "bee", "crab", "crow", "deer", "dove", "eel", "finch", "fox", "frog", "goat", "hare",
    "hawk", "horse", "lark", "lynx", "mole", "moth", "newt", "owl", "panda", "robin", "seal", "shrew", "slug",
    "snail", "swan", "toad", "wolf", "wren",
)


# The version (4) and variant (RFC 4122) bits of a uuid4, which MLflow's uuid.uuid4().hex has too.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def random_id() -> str:
    """32 lowercase hex digits, a random uuid4 as ``uuid.uuid4().hex`` prints it (run and client ids)."""
    return f"{int.from_bytes(os.urandom(16), 'big') & _UUID4_CLEAR | _UUID4_SET:032x}"


def random_run_name() -> str:
    """A name such as ``swift-owl-482``."""
    random = os.urandom(6)
    a, n, number = random[0], random[1], int.from_bytes(random[2:], "big")
    # 32 adjectives and 32 nouns divide 256, so each is equally likely; the number's bias is ~2e-7.
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}-{_NOUNS[n % len(_NOUNS)]}-{number % 1000}"
