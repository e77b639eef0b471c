"""Random run names in MLflow's ``adjective-noun-NNN`` style, for runs started without a name."""

from __future__ import annotations

import random

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


def random_run_name() -> str:
    """A name such as ``swift-owl-482``."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 999)}"
