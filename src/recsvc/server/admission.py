"""Admission control for the Recommender RPCs: a cap on concurrent ranking work, and deadlines.

Ranking is CPU work under the GIL: a process runs about one request at a time at full speed, so admitting
more than a few at once only makes every one of them slower, and queueing without bound turns a burst into
timeouts for everybody. The :class:`AdmissionInterceptor` therefore admits at most ``max_concurrent_rpcs``
Recommender calls per process and answers the next one RESOURCE_EXHAUSTED at once (the caller backs off or
tries another replica; a load balancer spreads the retry). grpc's own ``maximum_concurrent_rpcs`` (set by
:func:`recsvc.server.app.build_server` to ``max_workers + max_queued_rpcs``) bounds what may wait for a
thread at all, health checks included.

A call whose deadline has already passed, or whose caller went away, is not ranked: it is answered
DEADLINE_EXCEEDED (or CANCELLED) before any work. grpc itself drops calls whose deadline passed while they
waited for a thread; this check catches the ones that expire between grpc and the engine.

Only unary Recommender methods are wrapped (all of them are unary); Admin, health and reflection are not
capped, so an operator and a kubelet can always reach an overloaded process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from recsvc.errors import Overloaded

logger = logging.getLogger(__name__)

#: Methods under this prefix are admitted through the cap (the ranking work).
RECOMMENDER_PREFIX = "/recsvc.v1.Recommender/"

_OVERLOADED = grpc.StatusCode[Overloaded.code.name]
_WARN_EVERY_SECONDS = 10.0


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Caps concurrent Recommender calls (``max_concurrent`` <= 0: no cap) and refuses expired ones.

    ``in_flight`` is the number of calls being ranked right now (exported by the Admin API).
    """

    def __init__(self, max_concurrent: int, prefix: str = RECOMMENDER_PREFIX) -> None:
        self.max_concurrent = max(0, int(max_concurrent))
        self._prefix = prefix
        self._lock = threading.Lock()
        self._in_flight = 0
        self._refused_since_warning = 0
        self._last_warning = 0.0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix) or not handler.unary_unary:
            return handler
        return handler._replace(unary_unary=self._wrap(handler.unary_unary))

    def _wrap(self, behavior: Callable[[Any, grpc.ServicerContext], Any]
              ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            if not context.is_active():
                # the deadline passed or the caller cancelled while the call waited: no work for nobody
                expired = context.time_remaining() <= 0
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED,
                              "deadline exceeded before the request was ranked" if expired else "cancelled")
            if context.time_remaining() <= 0:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the request was ranked")
            if not self._admit():
                context.abort(_OVERLOADED, f"server busy: {self.max_concurrent} requests are being ranked in this "
                                           "process; retry with backoff or on another replica")
            try:
                return behavior(request, context)
            finally:
                with self._lock:
                    self._in_flight -= 1

        return wrapper

    def _admit(self) -> bool:
        """Take a slot if one is free (never waits: waiting is what the cap exists to prevent)."""
        with self._lock:
            if self.max_concurrent and self._in_flight >= self.max_concurrent:
                self._refused_since_warning += 1
                now = time.monotonic()
                if now - self._last_warning >= _WARN_EVERY_SECONDS:
                    # one line per interval, not one per refusal: an overloaded process must not also flood
                    # its log (the per-code request counter has the exact numbers)
                    logger.warning("shedding load: %d request(s) refused in the last %.0f s (cap %d in flight)",
                                   self._refused_since_warning, _WARN_EVERY_SECONDS, self.max_concurrent)
                    self._refused_since_warning = 0
                    self._last_warning = now
                return False
            self._in_flight += 1
            return True
