"""The daemon-wide budget of bytes that connections hold in partial frames.

A connection holds what has arrived of a frame until the rest does: up to a whole frame
(MAX_FRAME_SIZE, 16 MiB). One that sent all but the last byte of a frame and went silent held it
for ever: 40 such connections held 672 MB, and ``max_connections`` (1024) of them could hold 17 GB.
Past MAX_PARTIAL_FRAME_BYTES held by all connections together, the connection whose partial frame
began the longest ago is closed (``ClientConnection.drop_partial_frame``). That is one stalled in
the middle of a frame, not one streaming: each of a streaming client's frames is soon whole, and
the next one new. A real client closed so reconnects and sends its unacknowledged batches again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._connection import ClientConnection

# 16 whole frames, or 32 inline artifacts of MAX_INLINE_ARTIFACT_SIZE, arriving at once: a real
# client sends a frame in one go, so its partial frame is whole a moment later.
MAX_PARTIAL_FRAME_BYTES = 256 * 1024 * 1024


class PartialFrames:
    """The bytes each connection holds of a frame not yet whole, and since when."""

    __slots__ = ("_held", "total")

    def __init__(self) -> None:
        self.total = 0
        # Connection -> (bytes held, time.monotonic() when its partial frame began).
        self._held: dict[ClientConnection, tuple[int, float]] = {}

    def update(self, conn: ClientConnection, held: int, *, new_frame: bool, now: float) -> None:
        """``conn`` holds ``held`` bytes of a partial frame now; ``new_frame``: it completed a frame
        since its last update, so what it holds is of a frame begun now."""
        before = self._held.pop(conn, None)
        if before is not None:
            self.total -= before[0]
        if held:
            self._held[conn] = (held, now if before is None or new_frame else before[1])
            self.total += held

    def forget(self, conn: ClientConnection) -> None:
        """``conn`` holds nothing any more (it closed)."""
        self.update(conn, 0, new_frame=True, now=0.0)

    def over_budget(self) -> bool:
        return self.total > MAX_PARTIAL_FRAME_BYTES

    def oldest(self) -> tuple[ClientConnection, int, float]:
        """The connection whose partial frame began first, the bytes it holds, and when it began."""
        conn, (held, since) = min(self._held.items(), key=lambda item: item[1][1])
        return conn, held, since
