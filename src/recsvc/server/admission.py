"""Admission control for the Recommender RPCs: decided at the door, before a call waits for anything.

Ranking is CPU work under the GIL: a process runs about one request at a time at full speed, so admitting
more than a few at once only makes every one of them slower, and queueing without bound turns a burst into
timeouts for everybody. The :class:`AdmissionInterceptor` therefore admits at most ``max_concurrent_rpcs``
Recommender calls per process and answers the next one RESOURCE_EXHAUSTED at once (the caller backs off or
tries another replica; a load balancer spreads the retry).

*At the door* is the point of the design. grpc's sync server runs the interceptors' ``intercept_service`` on
its one serving thread as each call arrives, but the call's behaviour on a pool thread, in arrival order: a
cap checked inside the behaviour (as it used to be) only sees a call once a thread picks it up, so at 10x
the cap the excess waited in the pool's queue as long as the admitted calls did, and grpc's own
``maximum_concurrent_rpcs`` refused health probes along with them. So the decision is taken in
``intercept_service`` (microseconds, on the serving thread), and the call is sent to one of separate thread
pools by grpc's ``experimental_thread_pool`` attribute on the behaviour (the one grpc's health service uses):

* admitted ranking calls to the **ranking pool** (``max_workers`` threads; it holds the slot until the call's
  task ends, whether or not the behaviour ran, so a call cancelled in the queue gives its slot back),
* refusals (RESOURCE_EXHAUSTED, or UNAVAILABLE while draining) to a **refusal pool** whose work is one
  ``abort``, so a refusal never waits behind ranking,
* everything else (Admin, Events, reflection) stays on the server's own pool, and health on its own threads: none of
  them is counted or refused for load.

Without a cap (``max_concurrent_rpcs`` 0), at most ``max_workers + max_queued_rpcs`` ranking calls are
admitted (the rest refused the same way), so a process never accepts unbounded work.

A call whose deadline has already passed, or whose caller went away, is not ranked: it is answered
DEADLINE_EXCEEDED (or CANCELLED) before any work, when a ranking thread picks it up.

While the server drains (:meth:`AdmissionInterceptor.begin_drain`, called by
:func:`recsvc.server.app.stop_server`) a new ranking call is answered UNAVAILABLE, which clients retry on
another replica, rather than accepted and then cut (CANCELLED) when the grace ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from recsvc.errors import Overloaded

logger = logging.getLogger(__name__)

#: Methods under this prefix are admitted through the cap (the ranking work).
RECOMMENDER_PREFIX = "/recsvc.v1.Recommender/"
#: Threads answering refusals. A refusal is one ``abort`` (microseconds), but grpc's pool thread first waits
#: for the request message to be read, so a handful of threads keep refusals from queueing behind each other.
REFUSAL_THREADS = 8

_OVERLOADED = grpc.StatusCode[Overloaded.code.name]
_WARN_EVERY_SECONDS = 10.0


_task = threading.local()  # per ranking thread: whether the running task still holds its call's slot


class RankingPool(futures.ThreadPoolExecutor):
    """The ranking threads; every task submitted here is one admitted call and gives its slot back.

    grpc submits each call it routes here once (``experimental_thread_pool``). The slot is given back when
    the behaviour returns (:meth:`release_current`, before grpc sends the answer: a closed-loop caller's
    next call must find it free), or when the task ends without running the behaviour (the caller went away
    while the call waited).
    """

    def __init__(self, threads: int, release: Callable[[], None]) -> None:
        super().__init__(max_workers=max(1, threads), thread_name_prefix="recsvc-rank")
        self._release = release

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        def task() -> Any:
            _task.holding = True
            try:
                return fn(*args, **kwargs)
            finally:
                self.release_current()

        try:
            return super().submit(task)
        except BaseException:
            self._release()
            raise

    def release_current(self) -> None:
        """Give back the slot of the call this thread runs, once (later calls do nothing)."""
        if getattr(_task, "holding", False):
            _task.holding = False
            self._release()


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Caps concurrent Recommender calls at the door and refuses expired ones (see the module docstring).

    Parameters
    ----------
    max_concurrent
        Ranking calls admitted at once; <= 0: no cap of its own, ``threads + max_waiting`` at most.
    threads
        Threads of the ranking pool (``max_workers``).
    max_waiting
        Without a cap: admitted calls that may wait for a ranking thread (``max_queued_rpcs``).

    ``in_flight`` is the number of admitted calls not finished yet (exported by the Admin API).
    """

    def __init__(self, max_concurrent: int, threads: int = 8, max_waiting: int = 64,
                 prefix: str = RECOMMENDER_PREFIX) -> None:
        self.max_concurrent = max(0, int(max_concurrent))
        self.limit = self.max_concurrent or max(1, threads) + max(0, max_waiting)
        self._prefix = prefix
        self._lock = threading.Lock()
        self._in_flight = 0
        self._draining = False
        self._refused_since_warning = 0
        self._last_warning = 0.0
        self.ranking_pool = RankingPool(threads, self._release)
        self._refusal_pool = futures.ThreadPoolExecutor(max_workers=REFUSAL_THREADS,
                                                        thread_name_prefix="recsvc-refuse")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin_drain(self) -> None:
        """From now on refuse new ranking calls UNAVAILABLE (the server is stopping; retry elsewhere)."""
        with self._lock:
            self._draining = True

    def close(self) -> None:
        """Let the pools' idle threads end (after the server stopped; nothing may be submitted afterwards)."""
        self.ranking_pool.shutdown(wait=False)
        self._refusal_pool.shutdown(wait=False)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix) or not handler.unary_unary:
            return handler
        refusal = self._admit()
        if refusal is not None:
            return handler._replace(unary_unary=self._refuse(*refusal))
        behavior = self._wrap(handler.unary_unary)
        behavior.experimental_thread_pool = self.ranking_pool  # type: ignore[attr-defined]  # grpc reads it
        return handler._replace(unary_unary=behavior)

    def _refuse(self, code: grpc.StatusCode, details: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(code, details)

        refuse.experimental_thread_pool = self._refusal_pool  # type: ignore[attr-defined]  # grpc reads it
        return refuse

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
            try:
                return behavior(request, context)
            finally:
                self.ranking_pool.release_current()

        return wrapper

    def _admit(self) -> tuple[grpc.StatusCode, str] | None:
        """Take a slot if one is free, else the refusal (never waits: waiting is what the cap prevents)."""
        warn = 0
        with self._lock:
            if self._draining:
                return grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another replica"
            if self._in_flight < self.limit:
                self._in_flight += 1
                return None
            self._refused_since_warning += 1
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_SECONDS:
                warn, self._refused_since_warning, self._last_warning = self._refused_since_warning, 0, now
        if warn:
            # one line per interval, not one per refusal: an overloaded process must not also flood its log
            # (the per-code request counter has the exact numbers)
            logger.warning("shedding load: %d request(s) refused in the last %.0f s (cap %d in flight)",
                           warn, _WARN_EVERY_SECONDS, self.limit)
        return _OVERLOADED, (f"server busy: {self.limit} requests are being ranked in this process; retry with "
                             "backoff or on another replica")

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
