"""The trackd daemon: one per user and machine, it writes every client's events into ./mlruns."""

from __future__ import annotations

from ._batcher import Batcher, PendingBatch
from ._config import DaemonConfig
from ._loop import loop_factory
from ._main import main
from ._files import AlreadyRunning
from ._server import Server

__all__ = ["AlreadyRunning", "Batcher", "DaemonConfig", "PendingBatch", "Server", "loop_factory", "main"]
