"""What a logging call's ``synchronous`` argument does, in one place for the Client and the fluent API.

Every trackd call is asynchronous: it returns once the event is buffered. ``synchronous=True``
makes the call also wait until the event is in the store (a flush of its client), and
``synchronous=False`` returns a ``RunOperations`` whose ``wait()`` does that later, as MLflow's
asynchronous logging does, so code written for ``op = mlflow.log_metric(..., synchronous=False);
op.wait()`` runs unchanged.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import ClientClosedError


class _Flushable(Protocol):
    def flush(self, timeout: float | None = None) -> object: ...

    def _wait_closed(self) -> None: ...


class RunOperations:
    """The pending work of one or more logging calls made with ``synchronous=False``."""

    __slots__ = ("_client",)

    def __init__(self, client: _Flushable) -> None:
        self._client = client

    def wait(self) -> None:
        """Block until what the calls logged is in the store (everything their client logged
        before them included); raises as ``flush()`` does for refused items.

        A client closed since waits for its close instead, which delivers what it had accepted
        and says what it could not. The fluent API closes clients by itself (set_tracking_uri to
        another store, exit), and ``op.wait()`` after that raised ClientClosedError for a close
        the caller never made; MLflow's returns. Returning at once while another thread's close
        was still delivering let the caller read the store without the points it waited for.
        """
        try:
            self._client.flush()
        except ClientClosedError:
            self._client._wait_closed()

    def __repr__(self) -> str:
        return f"RunOperations({self._client!r})"


def settle(client: _Flushable, synchronous: bool | None) -> RunOperations | None:
    """Finish a logging call: flush for ``synchronous=True``, a ``RunOperations`` for ``False``."""
    if synchronous:
        client.flush()
        return None
    if synchronous is False:
        return RunOperations(client)
    return None
