"""Seeing what a server process does: Prometheus metrics and one JSON access line per request.

Metrics live in a registry of the process's own (not prometheus_client's global one), served over HTTP on
``metrics_port`` by :meth:`ServerMetrics.serve_http`:

=============================================  ==============================================================
``recsvc_requests_total{rpc,code}``            every recsvc call (Recommender and Admin) by final status code
``recsvc_request_errors_total{rpc,code}``      the same, for codes other than OK
``recsvc_request_latency_seconds{rpc,channel}`` histogram of handling time; ``channel`` is one the model
                                               knows, ``none`` (not given) or ``other`` (bounded cardinality)
``recsvc_recommend_policy_total{policy}``      Recommend answers by ranking path: ``popular`` and ``context``
                                               are the fallbacks for unknown customers (fallback rate =
                                               their share of the total)
``recsvc_stock_fallback_total{rpc}``           answers the store's stock emptied or left short, filled with
                                               the channel's popular items (``fallback`` =
                                               ``popular_ignoring_stock``): stock that does not match the model
``recsvc_in_flight_requests``                  calls being handled now
``recsvc_model_info{version,created_at}``      1 for the serving version
``recsvc_model_age_seconds``                   now - the serving model's ``created_at``
``recsvc_model_loaded_timestamp_seconds``      when this process loaded it
``recsvc_model_reloads_total{result}``         loads of a new version: ``success`` / ``failure``
``process_*``                                  CPU, memory, open files of this process
=============================================  ==============================================================

Several workers: each process serves its own registry on ``metrics_port + worker index`` (decision: not
prometheus_client's multiprocess mode, which needs a shared scratch folder cleaned at every start, cannot
export live gauges such as the model age, and would hide which worker serves which version during a
reload). Prometheus scrapes every port and sums with ``sum by (rpc, code)``; in Kubernetes run one worker
per pod and scrape one port.

The access line (logger ``recsvc.access``, only when ``log_json``) carries ``rpc``, ``code``, ``latency_ms``,
``channel``, ``request_id``, ``caller`` and ``peer`` as JSON fields. The request id is the caller's
``x-request-id`` or a new one; every inner interceptor reads it from the call's
:class:`~recsvc.server.interceptors.CallInfo`, so an INTERNAL error's log line and the access line name the
same id.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recsvc.ranking.results import FALLBACK_IGNORING_STOCK
from recsvc.server.holder import ModelHolder
from recsvc.server.interceptors import CallInfo, _call_info, carry_lane, current_call

__all__ = ["LATENCY_BUCKETS", "CallInfo", "MetricsEndpoint", "ObservabilityInterceptor", "ServerMetrics",
           "current_call"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("recsvc.access")

#: Only methods under this prefix are measured (health probes would drown the numbers).
RECSVC_PREFIX = "/recsvc."

#: Latency buckets (seconds): a ranked answer takes about a millisecond on a 100k-item catalog.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                      2.5, 5.0)


def _short_rpc(method: str) -> str:
    return method.rsplit("/", 1)[-1]


class _ModelCollector(Collector):
    """Model gauges computed at scrape time from the serving engine (always current, nothing to update)."""

    def __init__(self, holder: ModelHolder) -> None:
        self._holder = holder

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("recsvc_model_info", "The serving model version (value 1).",
                                 labels=["version", "created_at"])
        age = GaugeMetricFamily("recsvc_model_age_seconds", "Seconds since the serving model was trained.")
        loaded = GaugeMetricFamily("recsvc_model_loaded_timestamp_seconds",
                                   "Unix time this process loaded the serving model.")
        try:
            model = self._holder.current().model
        except Exception:  # nothing loaded yet: the gauges are absent, not zero
            model = None
        if model is not None:
            info.add_metric([model.version, model.created_at], 1.0)
            # created_at missing or not ISO 8601: no age rather than a wrong one
            with contextlib.suppress(TypeError, ValueError):
                age.add_metric([], max(0.0, time.time() - datetime.fromisoformat(model.created_at).timestamp()))
            with contextlib.suppress(TypeError, ValueError):
                loaded.add_metric([], datetime.fromisoformat(model.loaded_at).timestamp())
        yield info
        yield age
        yield loaded


class MetricsEndpoint:
    """A running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = int(self._httpd.server_port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ServerMetrics:
    """The Prometheus metrics of one server process (see the module docstring for the list).

    Parameters
    ----------
    holder
        Read at scrape time for the model gauges, and per request for the channels the model knows.
    registry
        Defaults to a new registry (so several servers in one test process never collide).
    """

    def __init__(self, holder: ModelHolder, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._holder = holder
        self.requests = Counter("recsvc_requests", "recsvc calls by RPC and final status code.",
                                ["rpc", "code"], registry=self.registry)
        self.errors = Counter("recsvc_request_errors", "recsvc calls that did not end OK, by RPC and code.",
                              ["rpc", "code"], registry=self.registry)
        self.latency = Histogram("recsvc_request_latency_seconds", "Time to handle a recsvc call.",
                                 ["rpc", "channel"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.policies = Counter("recsvc_recommend_policy",
                                "Recommend answers by ranking path (popular/context = fallback for unknown "
                                "customers).", ["policy"], registry=self.registry)
        self.stock_fallbacks = Counter("recsvc_stock_fallback",
                                       "Answers the store's stock emptied or left short, filled with the channel's "
                                       "popular items regardless of stock.", ["rpc"], registry=self.registry)
        self.in_flight = Gauge("recsvc_in_flight_requests", "recsvc calls being handled now.",
                               registry=self.registry)
        self.reloads = Counter("recsvc_model_reloads", "Loads of a newly published model version, by result.",
                               ["result"], registry=self.registry)
        for result in ("success", "failure"):
            self.reloads.labels(result)  # present at 0, so alerts on increase() work from the first failure
        self.registry.register(_ModelCollector(holder))
        ProcessCollector(registry=self.registry)
        # Label children by their label values, looked up once: ``labels()`` takes a lock and builds a key per
        # call. Every key is bounded (rpc names, status codes, the model's channels, policy names).
        self._requests: dict[tuple[str, str], Any] = {}
        self._errors: dict[tuple[str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._policies: dict[str, Any] = {}
        self._known_model: object = None
        self._known_channels: frozenset[str] = frozenset()

    def channel_label(self, channel: str) -> str:
        """``channel`` when the serving model knows it, ``none`` when empty, else ``other``.

        Callers choose the channel string; labelling by it verbatim would let them create unbounded series.
        """
        if not channel:
            return "none"
        try:
            model = self._holder.current().model
        except Exception:
            return "other"
        if model is not self._known_model:  # a new model may know other channels
            self._known_channels, self._known_model = frozenset(model.channels), model
        return channel if channel in self._known_channels else "other"

    @staticmethod
    def _child(cache: dict[Any, Any], metric: Any, key: Any) -> Any:
        child = cache.get(key)
        if child is None:
            child = cache[key] = metric.labels(*key) if isinstance(key, tuple) else metric.labels(key)
        return child

    def observe(self, rpc: str, code: str, seconds: float, channel: str, response: Any = None) -> None:
        """Count one finished call."""
        self._child(self._requests, self.requests, (rpc, code)).inc()
        if code != "OK":
            self._child(self._errors, self.errors, (rpc, code)).inc()
        self._child(self._latency, self.latency, (rpc, self.channel_label(channel))).observe(seconds)
        if response is None:
            return
        policy = getattr(response, "policy", "")
        if policy and isinstance(policy, str):
            self._child(self._policies, self.policies, policy).inc()
        if getattr(response, "fallback", "") == FALLBACK_IGNORING_STOCK:
            self.stock_fallbacks.labels(rpc).inc()

    def record_reload(self, result: Any) -> None:
        """Count one load attempt (a :class:`recsvc.server.lifecycle.ReloadResult`)."""
        outcome = getattr(getattr(result, "outcome", None), "name", "")
        if outcome == "SWAPPED":
            self.reloads.labels("success").inc()
        elif outcome == "REJECTED":
            self.reloads.labels("failure").inc()

    def serve_http(self, host: str, port: int) -> MetricsEndpoint:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (port 0 picks a free one)."""
        endpoint = MetricsEndpoint(host, port, self.registry)
        logger.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", endpoint.port)
        return endpoint


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Times every unary recsvc call, counts it by status code and writes the access line.

    Put it first (outermost), so calls refused by authentication or admission are counted too.
    """

    def __init__(self, metrics: ServerMetrics | None, access_log: bool) -> None:
        self._metrics = metrics
        self._access_log = access_log

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(RECSVC_PREFIX) or not handler.unary_unary:
            return handler
        return handler._replace(unary_unary=self._wrap(handler.unary_unary, _short_rpc(method)))

    def _wrap(self, behavior: Callable[[Any, grpc.ServicerContext], Any], rpc: str
              ) -> Callable[[Any, grpc.ServicerContext], Any]:
        metrics, access_log = self._metrics, self._access_log
        in_flight = metrics.in_flight if metrics is not None else None

        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            info = CallInfo(context)
            token = _call_info.set(info)
            if in_flight is not None:
                in_flight.inc()
            start = time.perf_counter()
            response = None
            try:
                response = behavior(request, context)
                return response
            finally:
                seconds = time.perf_counter() - start
                code = self._final_code(context, failed=response is None)
                channel = getattr(request, "channel", "")
                channel = channel if isinstance(channel, str) else ""
                if metrics is not None:
                    in_flight.dec()  # type: ignore[union-attr]  # set whenever metrics is
                    metrics.observe(rpc, code, seconds, channel, response if code == "OK" else None)
                if access_log:
                    access_logger.info("%s %s %.2f ms", rpc, code, seconds * 1e3, extra={
                        "rpc": rpc, "code": code, "latency_ms": round(seconds * 1e3, 3), "channel": channel,
                        "request_id": info.request_id, "caller": info.caller, "peer": context.peer()})
                _call_info.reset(token)

        return carry_lane(wrapper, behavior)

    @staticmethod
    def _final_code(context: grpc.ServicerContext, failed: bool) -> str:
        """The status the caller sees: the code set by an abort, else OK — unless the caller is gone."""
        code = context.code()
        if code is not None and code != grpc.StatusCode.OK:
            return str(code.name)
        if failed:
            return "UNKNOWN"
        if not context.is_active():
            # the answer was computed but nobody receives it: count what the caller saw
            return "DEADLINE_EXCEEDED" if context.time_remaining() <= 0 else "CANCELLED"
        return "OK"
