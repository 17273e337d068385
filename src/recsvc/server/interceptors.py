"""The one place where exceptions become gRPC statuses.

A :class:`~recsvc.errors.RecsvcError` raised anywhere under a recsvc method becomes its own status code with
its message (the message is written for the caller). Any other exception is a bug: the caller gets INTERNAL
with a generic message carrying a request id, and the traceback goes to the log under the same id, so an
operator can find it without internals leaking to clients. Servicers therefore never catch exceptions or set
status codes themselves.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from recsvc.errors import InvalidRequest, RecsvcError, StatusCode

logger = logging.getLogger(__name__)

#: Metadata key a caller may set to choose the request id reported with INTERNAL errors.
REQUEST_ID_KEY = "x-request-id"

#: Only methods under this prefix are wrapped; health and reflection keep their own handlers untouched
#: (the health Watch handler relies on grpc's experimental non-blocking attributes, which a wrapper hides).
RECSVC_METHOD_PREFIX = "/recsvc."

#: Attributes grpc reads on a behaviour to choose its thread pool (see :mod:`recsvc.server.admission`).
_LANE_ATTRIBUTES = ("experimental_thread_pool", "experimental_non_blocking")

_GRPC_CODE = {code: grpc.StatusCode[code.name] for code in StatusCode}
_QUIET = {StatusCode.INVALID_ARGUMENT, StatusCode.NOT_FOUND}


def carry_lane(wrapper: Callable[..., Any], behavior: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` with ``behavior``'s thread-pool attributes, so an outer interceptor keeps the pool an inner
    one chose (admission routes admitted calls and refusals to different pools). Returns ``wrapper``."""
    for name in _LANE_ATTRIBUTES:
        if hasattr(behavior, name):
            setattr(wrapper, name, getattr(behavior, name))
    return wrapper


class CallInfo:
    """What the interceptors learn about one call, shared through a context variable (grpc runs each call's
    behaviour in a context of its own, so it never leaks into the next call on the same thread).

    The request id is the caller's ``x-request-id`` or, only when something asks for it (an access line, an
    INTERNAL error), a new random one: most calls never need one, and a ``uuid4`` per call is measurable.
    """

    __slots__ = ("_context", "_request_id", "caller")

    def __init__(self, context: grpc.ServicerContext | None = None, request_id: str = "") -> None:
        self._context = context
        self._request_id = request_id
        self.caller = ""

    @property
    def request_id(self) -> str:
        if not self._request_id:
            sent = _sent_request_id(self._context) if self._context is not None else ""
            self._request_id = sent or uuid.uuid4().hex[:16]
        return self._request_id


_call_info: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("recsvc_call_info", default=None)


def current_call() -> CallInfo | None:
    """The call being handled (inside :class:`~recsvc.server.metrics.ObservabilityInterceptor`), else ``None``."""
    return _call_info.get()


def _sent_request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and value:
            return str(value)[:64]
    return ""


def _request_id(context: grpc.ServicerContext) -> str:
    """The call's request id: the one the observability layer reports, else the caller's, else a new one."""
    info = _call_info.get()
    if info is not None:
        return info.request_id
    return _sent_request_id(context) or uuid.uuid4().hex[:16]


class MalformedRequest:
    """Stands in for a request payload that did not parse; the wrapped handler answers INVALID_ARGUMENT."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def tolerant_parser(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` that returns a :class:`MalformedRequest` instead of raising (bad wire format, a string
    field that is not UTF-8); the parser's message names the message type, nothing internal."""
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return MalformedRequest(f"request payload is not a valid message: {exc}")

    return parse


class ExceptionToStatusInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by recsvc servicer methods to gRPC statuses (see the module docstring).

    The wrapped handler of each method is built once and reused while the inner handler stays the same
    object (the registered services hand out one handler per method), so a call costs a dictionary lookup
    here, not new closures.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(RECSVC_METHOD_PREFIX):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap_handler(handler, method)
        self._wrapped[method] = (handler, wrapped)  # one assignment: threads racing here store equal wrappers
        return wrapped

    def _wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if not handler.request_streaming and handler.request_deserializer is not None:
            # grpc answers a payload it cannot parse with INTERNAL; that is the caller's fault, so parse it
            # here and let the wrapper below turn the failure into INVALID_ARGUMENT (found by tests/test_fuzz.py).
            handler = handler._replace(request_deserializer=tolerant_parser(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=self._wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._wrap_stream(handler.stream_stream, method))
        return handler

    def _wrap_unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any], method: str
                    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if isinstance(request, MalformedRequest):
                    raise InvalidRequest(request.message)
                return behavior(request, context)
            except Exception as exc:
                self._abort(exc, context, method)
                raise  # not reached: abort raises

        return wrapper

    def _wrap_stream(self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str
                     ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                if isinstance(request, MalformedRequest):
                    raise InvalidRequest(request.message)
                yield from behavior(request, context)
            except Exception as exc:
                self._abort(exc, context, method)
                raise

        return wrapper

    @staticmethod
    def _abort(exc: Exception, context: grpc.ServicerContext, method: str) -> None:
        """Abort the RPC with the status ``exc`` maps to (always raises)."""
        code = context.code()
        if code is not None and code != grpc.StatusCode.OK:
            raise exc  # the handler already aborted (context.abort raises): keep its status
        if isinstance(exc, RecsvcError):
            level = logging.DEBUG if exc.code in _QUIET else logging.WARNING
            logger.log(level, "%s -> %s: %s", method, exc.code.name, exc)
            context.abort(_GRPC_CODE[exc.code], str(exc))
        request_id = _request_id(context)
        logger.error("%s failed (request id %s)", method, request_id, exc_info=exc,
                     extra={"request_id": request_id})
        context.abort(grpc.StatusCode.INTERNAL, f"internal error; see server log, request id {request_id}")
