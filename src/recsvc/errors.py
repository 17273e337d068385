"""Errors the ranking core raises on purpose, each carrying the status it should become.

The core never imports grpc: an error names its status with :class:`StatusCode`, an enum of our own whose
member names equal ``grpc.StatusCode`` names, and the server's ``ExceptionToStatusInterceptor`` is the one
place that turns it into a gRPC status (``grpc.StatusCode[error.code.name]``). Messages are shown to the
caller as they are, so they must say what to fix and must not leak internals. Any other exception is a bug
and becomes INTERNAL with a generic message.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class StatusCode(enum.Enum):
    """The statuses our errors map to; member names equal the ``grpc.StatusCode`` names."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    INTERNAL = "INTERNAL"


class RecsvcError(Exception):
    """Base of the errors raised on purpose; ``code`` names the status and ``str(error)`` is the message."""

    code: ClassVar[StatusCode] = StatusCode.INTERNAL

    @property
    def message(self) -> str:
        return str(self)


class InvalidRequest(RecsvcError):
    """The request is malformed or outside a limit; the message names the field and what to fix."""

    code = StatusCode.INVALID_ARGUMENT


class NotFound(RecsvcError):
    """The request names one thing that must exist (e.g. the item of SimilarItems) and it does not."""

    code = StatusCode.NOT_FOUND


class ModelUnavailable(RecsvcError):
    """No model is loaded (yet); the caller should retry later or against another replica."""

    code = StatusCode.UNAVAILABLE


class Overloaded(RecsvcError):
    """The server sheds load; the caller should back off and retry."""

    code = StatusCode.RESOURCE_EXHAUSTED
