"""Random ids and run names: run and client ids as uuid4 hex, names in MLflow's ``adjective-noun-NNN`` style.

Both come from os.urandom, without the uuid and random modules: a client process loads neither
(~0.4 MB of RSS and ~1 ms of import for uuid and the platform module it pulls in; random's
hashing and bisect modules), which short processes and the client's memory target count.
"""

from __future__ import annotations

import os

# 128 of each (they divide 256, so each is equally likely): 16,384,000 names with the number, as
# many as MLflow's ~19.6M. With 32 of each (1,024,000) a sweep of 1,000 runs had two runs of the
# same name about two times in five (seen in a chaos run's pool workers); now about one in thirty,
# one in forty with MLflow's. A name is at most 19 characters, within MLflow's 20.
_ADJECTIVES = (
    "able", "agile", "amber", "ample", "azure", "bold", "brave", "breezy", "bright", "brisk", "bubbly",
    "calm", "candid", "carefree", "casual", "cheery", "civil", "clever", "cool", "cosmic", "crisp",
    "curious", "dainty", "dapper", "daring", "dashing", "dazzling", "deft", "devoted", "dreamy", "eager",
    "earnest", "easy", "elated", "elegant", "epic", "exotic", "fair", "fancy", "fast", "fearless", "fiery",
    "fluffy", "fond", "frank", "free", "fresh", "friendly", "frosty", "funny", "gentle", "giddy", "gifted",
    "glad", "gleaming", "golden", "graceful", "grand", "handy", "happy", "hardy", "hearty", "honest",
    "humble", "jolly", "jovial", "joyful", "keen", "kind", "lively", "loyal", "lucid", "lucky", "lunar",
    "magic", "mellow", "merry", "mighty", "misty", "modest", "neat", "nifty", "nimble", "noble", "open",
    "peppy", "perky", "placid", "plucky", "polite", "proud", "quick", "quiet", "quirky", "radiant", "rapid",
    "rare", "regal", "robust", "rosy", "royal", "rustic", "savvy", "serene", "sharp", "shiny", "shy",
    "silent", "silky", "sleek", "smooth", "snappy", "snug", "solar", "sparkly", "spry", "steady", "sturdy",
    "sunny", "super", "swift", "tidy", "tranquil", "upbeat", "vivid", "warm", "wise", "witty"
)
_NOUNS = (
    "ant", "ape", "asp", "auk", "bass", "bat", "bear", "bee", "bison", "boar", "bug", "bull", "calf",
    "camel", "carp", "cat", "chick", "clam", "cod", "colt", "cow", "crab", "crane", "crow", "cub", "deer",
    "dingo", "doe", "dog", "dove", "duck", "eagle", "eel", "elk", "emu", "ewe", "falcon", "fawn", "ferret",
    "finch", "fish", "flea", "fly", "foal", "fox", "frog", "gecko", "gerbil", "gnat", "gnu", "goat",
    "goose", "grouse", "gull", "hare", "hawk", "hen", "heron", "hippo", "hog", "horse", "hound", "ibis",
    "jay", "kid", "kite", "kiwi", "koala", "lamb", "lark", "lemur", "lion", "llama", "loon", "lynx", "mink",
    "mole", "moose", "moth", "mouse", "mule", "newt", "orca", "otter", "owl", "ox", "panda", "parrot",
    "perch", "pig", "pika", "pony", "puma", "quail", "ram", "rat", "raven", "rhino", "robin", "rook",
    "seal", "shark", "sheep", "shrew", "skunk", "slug", "snail", "snake", "sow", "squid", "stag", "stoat",
    "swan", "tapir", "tern", "tiger", "toad", "trout", "tuna", "turkey", "vole", "wasp", "whale", "wolf",
    "worm", "wren", "yak", "zebra"
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
    # The number's bias is ~2e-7 (2**32 is not a multiple of 1,000).
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}-{_NOUNS[n % len(_NOUNS)]}-{number % 1000}"
