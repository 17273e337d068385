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
``intercept_service`` (microseconds, on the serving thread), and the call is sent on by grpc's
``experimental_thread_pool`` attribute on the behaviour (the one grpc's health service uses):

* admitted ranking calls to the **ranking pool** (``max_workers`` threads; it holds the slot until the call's
  task ends, whether or not the behaviour ran, so a call cancelled in the queue gives its slot back),
* refusals (RESOURCE_EXHAUSTED, or UNAVAILABLE while draining) to a :class:`DoorRefusal`, which answers the
  call **on the serving thread, without reading the request message**: the status is sent in the same turn
  that decided it, as grpc answers its own ``maximum_concurrent_rpcs`` refusals. A refusal handed to a pool
  thread instead cost four more turns at the GIL, each behind the ranking threads (the thread picks the call
  up and asks for the message; the serving thread delivers it; the thread parses it and aborts; the serving
  thread sends the status), and that, not the decision, was what made refusals slower than a bare call
  (``python -m benchmarks.admission`` measures both ways). Answering needs three names private to grpc
  (in ``grpc._server`` and ``grpc._common``); on a grpc without them the refusal runs the old way, on the
  door's own threads (:func:`inline_refusals_supported`; ``RECSVC_ADMISSION_REFUSALS=pool`` forces that,
  for the benchmark),
* everything else (Admin, Events, reflection) stays on the server's own pool, and health on its own threads: none of
  them is counted or refused for load.

A refusal answered at the door runs none of the other interceptors' behaviour wrappers (that is what makes it
cheap), so it is counted through ``on_refused`` (:func:`recsvc.server.app.build_server` wires it to the
request counter) and is refused before token authentication looks at the caller: an unauthenticated caller
of a busy server learns that it is busy, and nothing else.

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
import os
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
#: Threads answering refusals where grpc lacks what an answer at the door needs (:class:`DoorRefusal`). A
#: refusal is one ``abort``, but a pool thread first waits for the request message to be read, so a handful
#: of threads keep refusals from queueing behind each other.
REFUSAL_THREADS = 8
#: ``pool`` in this environment variable answers refusals on the door's threads even where grpc allows the
#: answer at the door (to measure one against the other: ``python -m benchmarks.admission``).
REFUSALS_ENV = "RECSVC_ADMISSION_REFUSALS"

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


def _grpc_server_internals() -> tuple[Callable[..., Any], Callable[..., Any], dict[Any, Any]] | None:
    """grpc's unary call task, its ``_abort`` and its status-code map, or None if this grpc has not all three."""
    try:
        from grpc import _common, _server
    except ImportError:  # pragma: no cover - grpc always has them today
        return None
    task = getattr(_server, "_unary_response_in_pool", None)
    abort = getattr(_server, "_abort", None)
    codes = getattr(_common, "STATUS_CODE_TO_CYGRPC_STATUS_CODE", None)
    if not callable(task) or not callable(abort) or not isinstance(codes, dict):
        return None
    return task, abort, codes


_GRPC = _grpc_server_internals()


def inline_refusals_supported() -> bool:
    """Whether this grpc lets a refusal be answered on the serving thread (:class:`DoorRefusal`)."""
    return _GRPC is not None


class DoorRefusal(futures.ThreadPoolExecutor):
    """The "thread pool" of refused calls: answers each one ``code`` on the thread that submits it.

    grpc's sync server submits a unary call as ``submit(context.run, _unary_response_in_pool, rpc_event,
    rpc_state, behavior, ...)`` from its serving thread, holding the call's state lock; the call's close is
    already being watched. Sending the status from there, with grpc's own ``_abort``, answers the call without
    reading its request or waking a thread (grpc answers its ``maximum_concurrent_rpcs`` refusals the same
    way). The returned future is already done, so grpc counts the call finished at once. A submit of any other
    shape (another grpc, a streaming call) runs the behaviour on this pool's threads, which aborts the call
    the ordinary way; ``answered`` and ``pooled`` count the two.
    """

    def __init__(self, code: grpc.StatusCode, details: str, inline: bool = True) -> None:
        super().__init__(max_workers=REFUSAL_THREADS, thread_name_prefix="recsvc-refuse")
        self.code, self.details = code, details
        self.inline = inline and _GRPC is not None
        self.answered = 0
        self.pooled = 0
        self._behavior = self._make_behavior()
        if _GRPC is not None:
            self._cygrpc_code, self._details_bytes = _GRPC[2][code], details.encode()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        if self.inline and _GRPC is not None and len(args) >= 3 and args[0] is _GRPC[0] and not kwargs:
            rpc_event, state = args[1], args[2]
            try:
                with state.condition:  # grpc holds it here already (a re-entrant lock); _abort expects it held
                    _GRPC[1](state, rpc_event.call, self._cygrpc_code, self._details_bytes)
            except Exception:  # never let a refusal break grpc's serving loop: refuse the ordinary way
                logger.debug("refusal at the door failed; refusing on a thread", exc_info=True)
            else:
                self.answered += 1
                done: futures.Future[Any] = futures.Future()
                done.set_result(None)
                return done
        self.pooled += 1
        return super().submit(fn, *args, **kwargs)

    def behavior(self) -> Callable[[Any, grpc.ServicerContext], Any]:
        """The refused call's behaviour: runs only when the call could not be answered at the door."""
        return self._behavior

    def _make_behavior(self) -> Callable[[Any, grpc.ServicerContext], Any]:
        code, details = self.code, self.details

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(code, details)

        refuse.experimental_thread_pool = self  # type: ignore[attr-defined]  # grpc reads it
        return refuse


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

    inline_refusals
        Answer refusals at the door (:class:`DoorRefusal`; the default, unless ``RECSVC_ADMISSION_REFUSALS``
        is ``pool``) or on the door's threads.

    ``in_flight`` is the number of admitted calls not finished yet (exported by the Admin API); ``on_refused``,
    if set, is called with the method and the code's name of every refusal (on the serving thread: keep it
    to a counter's increment).
    """

    def __init__(self, max_concurrent: int, threads: int = 8, max_waiting: int = 64,
                 prefix: str = RECOMMENDER_PREFIX, inline_refusals: bool | None = None) -> None:
        self.max_concurrent = max(0, int(max_concurrent))
        self.limit = self.max_concurrent or max(1, threads) + max(0, max_waiting)
        self._prefix = prefix
        self._lock = threading.Lock()
        self._in_flight = 0
        self._draining = False
        self._refused_since_warning = 0
        self._last_warning = 0.0
        self.ranking_pool = RankingPool(threads, self._release)
        if inline_refusals is None:
            inline_refusals = os.environ.get(REFUSALS_ENV, "").strip().lower() != "pool"
        self.overloaded = DoorRefusal(
            _OVERLOADED, f"server busy: {self.limit} requests are being ranked in this process; retry with "
                         "backoff or on another replica", inline=inline_refusals)
        self.draining = DoorRefusal(grpc.StatusCode.UNAVAILABLE,
                                    "server is shutting down; retry on another replica", inline=inline_refusals)
        self.on_refused: Callable[[str, str], None] | None = None

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
        self.overloaded.shutdown(wait=False)
        self.draining.shutdown(wait=False)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix) or not handler.unary_unary:
            return handler
        refusal = self._admit()
        if refusal is not None:
            if self.on_refused is not None and refusal.inline:  # else the wrappers run and count it
                self.on_refused(handler_call_details.method, refusal.code.name)
            return handler._replace(unary_unary=refusal.behavior())
        behavior = self._wrap(handler.unary_unary)
        behavior.experimental_thread_pool = self.ranking_pool  # type: ignore[attr-defined]  # grpc reads it
        return handler._replace(unary_unary=behavior)

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

    def _admit(self) -> DoorRefusal | None:
        """Take a slot if one is free, else the refusal (never waits: waiting is what the cap prevents)."""
        warn = 0
        with self._lock:
            if self._draining:
                return self.draining
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
        return self.overloaded

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
