"""Every exception trackd raises, in one tree.

    TrackdError
    ├── InvalidArgument (ValueError)     a call got a value MLflow would refuse, or one trackd does not implement
    │   ├── ParamChangedError            a param was logged again with a different value
    │   └── ArtifactNotFound (FileNotFoundError)  log_artifact(s) or download_artifacts of a path that does not exist
    ├── ProtocolError
    │   ├── LocalProtocolError           we tried to send something the protocol forbids
    │   └── RemoteProtocolError          the peer sent bytes we cannot accept
    ├── DaemonUnavailable                no daemon answers and none could be started
    ├── ClientClosedError (RuntimeError) the client was used after close()
    ├── DeliveryError                    the daemon refused or could not write accepted events
    ├── FlushTimeout (TimeoutError)      flush() ran out of time with events still pending
    └── StoreError
        ├── StoreUnavailable             the disk refused a write (full, read-only, I/O error); retry later
        ├── ExperimentNotFound (LookupError)
        ├── ExperimentExists (ValueError)
        ├── RunNotFound (LookupError)
        └── CorruptStoreFile             a file in ./mlruns is not in MLflow's format

Caller mistakes raise at the call site; delivery trouble never raises into a training
loop and is reported by ``flush()`` and ``trackd daemon status`` instead.

``MlflowException`` is another name for ``TrackdError`` (``trackd.exceptions.MlflowException`` too):
code ported with ``import trackd as mlflow`` catches every trackd error with
``except mlflow.exceptions.MlflowException``, and reads its ``message`` and ``error_code`` as MLflow's.
"""

from __future__ import annotations

import errno

__all__ = [
    "ArtifactNotFound",
    "ClientClosedError",
    "CorruptStoreFile",
    "DaemonUnavailable",
    "DeliveryError",
    "ExperimentExists",
    "ExperimentNotFound",
    "FlushTimeout",
    "InvalidArgument",
    "LocalProtocolError",
    "MlflowException",
    "ParamChangedError",
    "ProtocolError",
    "RemoteProtocolError",
    "RunNotFound",
    "StoreError",
    "StoreUnavailable",
    "TrackdError",
]


class TrackdError(Exception):
    """Base class of every trackd error."""

    # MLflow's ErrorCode name (MlflowException.error_code), for code that reads it.
    error_code = "INTERNAL_ERROR"

    @property
    def message(self) -> str:
        """The error's sentence, as MlflowException.message."""
        return str(self)


# MLflow's name, for `except mlflow.exceptions.MlflowException` in code ported with `import trackd as mlflow`.
MlflowException = TrackdError


class InvalidArgument(TrackdError, ValueError):
    """A call got an argument MLflow would refuse, or one trackd does not implement (a search on datasets.)."""

    error_code = "INVALID_PARAMETER_VALUE"


class ParamChangedError(InvalidArgument):
    """A param was logged again for the same run with a different value."""


class ArtifactNotFound(InvalidArgument, FileNotFoundError):
    """``log_artifact(s)`` of a path that does not exist: a ``FileNotFoundError`` too, as MLflow's
    copy raises, so ported code that catches ``OSError`` still does. ``download_artifacts`` of a
    path the run does not have raises it too."""

    # MLflow's code for a download's missing path (RunsArtifactRepository.download_artifacts).
    error_code = "RESOURCE_DOES_NOT_EXIST"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        # As the OSError MLflow's copy raises, for code that reads it; str() stays the message
        # (no strerror or filename is set).
        self.errno = errno.ENOENT


class ProtocolError(TrackdError):
    """The wire protocol was violated.

    ``batch_seq`` and ``request_id`` name the Batch or the request whose frame it was, when the
    frame was whole and its number reads (0: none), as h11's ``error_status_hint`` carries what
    the adapter answers: the daemon tells the client which one it will never take, so the client
    stops sending it instead of sending it again on every connection.
    """

    def __init__(self, message: str, *, batch_seq: int = 0, request_id: int = 0) -> None:
        super().__init__(message)
        self.batch_seq = batch_seq
        self.request_id = request_id


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids."""

    def _reraise_as_remote_protocol_error(self) -> RemoteProtocolError:
        """Turn this error into the peer's fault, at the one receive boundary (as h11 does)."""
        return RemoteProtocolError(str(self), batch_seq=self.batch_seq, request_id=self.request_id)


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes we cannot accept."""


class DaemonUnavailable(TrackdError):
    """No daemon answers on the socket and none could be started."""


class ClientClosedError(TrackdError, RuntimeError):
    """The client was used after close()."""


class DeliveryError(TrackdError):
    """The daemon refused or could not write events that a logging call had accepted.

    ``failures`` holds one sentence per refused item, naming it; an item refused again for the same
    reason (a metric key of a deleted run, in every batch) is one sentence counting its points and
    refusals. Past ``MAX_NAMED_ITEMS`` (100) items, a last entry counts the rest, not named. The
    message counts every refusal and event.
    """

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures: list[str] = list(failures or [])


class FlushTimeout(TrackdError, TimeoutError):
    """flush() ran out of time while events were still on their way to the store."""


class StoreError(TrackdError):
    """The ./mlruns store cannot do what was asked."""


class StoreUnavailable(StoreError):
    """The disk refused a write for a reason that may pass (full, quota, read-only, I/O error).

    Nothing of the batch stays half-written: metric files are cut back to their size before it,
    and the whole batch can be written again later.
    """


class ExperimentNotFound(StoreError, LookupError):
    """No experiment has that id or name."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class ExperimentExists(StoreError, ValueError):
    """An experiment with that name already exists (active or deleted)."""

    error_code = "RESOURCE_ALREADY_EXISTS"


class RunNotFound(StoreError, LookupError):
    """No run has that id in the store."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class CorruptStoreFile(StoreError):
    """A file in ./mlruns is not in MLflow's format; the message names the path and the line."""
