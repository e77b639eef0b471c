"""How the store writer tells the disk's failures from an item's, and which tag writes it can skip."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from ._write_items import TagWrite

T = TypeVar("T")

# The disk, not the item, refused these writes; they may succeed later (space freed, remount).
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENFILE, errno.EMFILE})


def journal_call(method: Callable[..., T], *args: Any) -> T:
    """A journal write; a disk that refuses it makes the whole batch wait, like any other write."""
    try:
        return method(*args)
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise StoreUnavailable(f"The write journal cannot be written ({exc.strerror}): {exc.filename!r}.") from exc
        raise


def os_error_message(item: str, exc: OSError) -> str:
    """A sentence for an item the disk refused for a reason of its own (a key clashing with a folder...)."""
    if isinstance(exc, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        return (
            f"Cannot write {item}: it clashes with an existing key, because MLflow stores each "
            f"key as a file and a key cannot be both a file and a folder of other keys (such "
            f"as 'a' and 'a/b'); found {exc.strerror} at {exc.filename!r}."
        )
    return f"Cannot write {item}: {exc.strerror or exc} ({exc.filename!r})."


def last_write_per_tag(tags: list[TagWrite]) -> list[TagWrite]:
    """Only the last set or delete of each tag in a batch: the earlier ones would each rewrite the
    same file (a temp file and a rename) only to be overwritten, and a loop calling
    set_tag("epoch", i) would cost the daemon a file per call. A final delete keeps the set before
    it, so deleting a tag set earlier in the same batch still finds it."""
    last: dict[tuple[str, str], TagWrite] = {}
    last_set: dict[tuple[str, str], TagWrite] = {}
    for tag in tags:
        key = (tag.run_id, tag.key)
        last.pop(key, None)  # re-insert, so the order is that of the last writes
        last[key] = tag
        if tag.value is not None:
            last_set[key] = tag
    if len(last) == len(tags):
        return tags
    kept = []
    for key, tag in last.items():
        if tag.value is None and key in last_set:
            kept.append(last_set[key])
        kept.append(tag)
    return kept
