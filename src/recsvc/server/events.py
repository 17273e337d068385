"""The ``recsvc.v1.Events`` servicer and its wiring: store, overlay, status and metrics of one server process.

:func:`start_events` opens the configured store (:func:`recsvc.events.store.open_store`) and starts the
overlay; :meth:`EventsRuntime.register` adds the servicer to a grpc server. The servicer only converts
messages: validation, dedupe and linking live in :mod:`recsvc.events.recording`, and errors (INVALID_ARGUMENT
for a call with no events or over the limit, UNAVAILABLE when the store is down) become statuses in
:class:`~recsvc.server.interceptors.ExceptionToStatusInterceptor` like every recsvc error.

A store that is down never affects health or the Recommender: the overlay reports ``down`` (status, metric,
log line), requests are answered from the model alone, and the overlay recovers at its next successful poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import grpc
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recsvc.config import ConfigError, Settings
from recsvc.days import day_of_iso, ms_of_day
from recsvc.events.overlay import CustomerActivity, EventOverlay, OverlayStatus
from recsvc.events.recording import Rejected, link_identities, record_events
from recsvc.events.store import EventStore, StoreUnavailable, open_store
from recsvc.events.validation import EventRecord, RawEvent
from recsvc.ranking.model import LoadedModel
from recsvc.server.holder import ModelHolder
from recsvc.v1 import events_pb2, events_pb2_grpc

logger = logging.getLogger(__name__)

EVENTS_SERVICE_NAME: str = events_pb2.DESCRIPTOR.services_by_name["Events"].full_name
#: Stands in for a Timestamp whose nanos are out of range, so validation answers bad_timestamp.
_INVALID_TIMESTAMP_MS = 2**62


def raw_event(message: events_pb2.Event) -> RawEvent:
    """A proto event as the transport-free :class:`RawEvent` (an unset timestamp stays None)."""
    timestamp_ms: int | None = None
    if message.HasField("timestamp"):
        ts = message.timestamp
        timestamp_ms = (ts.seconds * 1000 + ts.nanos // 1_000_000 if 0 <= ts.nanos < 1_000_000_000
                        else _INVALID_TIMESTAMP_MS)
    return RawEvent(event_id=message.event_id, customer_id=message.customer_id, item_id=message.item_id,
                    event=message.event, channel=message.channel, store_id=message.store_id,
                    order_id=message.order_id, quantity=message.quantity, price=message.price,
                    timestamp_ms=timestamp_ms, recommendation_id=message.recommendation_id,
                    position=message.position)


def _rejections(rejected: tuple[Rejected, ...]) -> list[events_pb2.Rejection]:
    return [events_pb2.Rejection(index=r.index, reason=r.reason, detail=r.detail) for r in rejected]


class EventsRuntime:
    """One process's store and overlay (``store`` None: events are off and nothing is registered)."""

    def __init__(self, settings: Settings, store: EventStore | None) -> None:
        self.settings = settings
        self.store = store
        events = settings.events
        self.overlay = (EventOverlay(store, poll_seconds=events.poll_seconds,
                                     recent_per_customer=events.recent_per_customer) if store is not None else None)
        self._counted: Counter | None = None
        #: Hears every newly recorded event with the serving model (the online metrics, recsvc.server.feedback).
        self.on_recorded: Callable[[LoadedModel, tuple[EventRecord, ...]], None] | None = None

    def start(self, model: LoadedModel | None = None) -> None:
        """Start following the store; events ``model`` (the serving one) includes are skipped at once."""
        if self.overlay is not None:
            self.overlay.start(model)

    def register(self, server: grpc.Server, engines: ModelHolder) -> None:
        """Add the Events servicer to ``server`` (before it starts)."""
        if self.store is not None:
            events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(self, engines), server)

    def activity(self, model: LoadedModel, customer_id: str) -> CustomerActivity | None:
        """The customer's live events after ``model``'s cut-off (None: none, or events are off)."""
        return self.overlay.activity(model, customer_id) if self.overlay is not None else None

    def status(self) -> OverlayStatus:
        if self.overlay is None:
            return OverlayStatus(backend="off", state="off", events=0, lag_seconds=0.0, error="")
        return self.overlay.status()

    def count(self, result: str, n: int) -> None:
        if self._counted is not None and n:
            self._counted.labels(result).inc(n)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """``recsvc_events_recorded{result}`` and the overlay gauges (computed at scrape time)."""
        self._counted = Counter("recsvc_events_recorded", "Events in RecordEvents calls, by result.", ["result"],
                                registry=registry)
        for result in ("accepted", "duplicate", "rejected"):
            self._counted.labels(result)
        registry.register(_OverlayCollector(self))

    def close(self) -> None:
        if self.overlay is not None:
            self.overlay.stop()
        if self.store is not None:
            self.store.close()


class _OverlayCollector(Collector):
    def __init__(self, runtime: EventsRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        status = self._runtime.status()
        up = GaugeMetricFamily("recsvc_events_overlay_up", "1 when the overlay reads the event store, 0 when the "
                               "store is down (answers come from the model alone).", labels=["backend"])
        up.add_metric([status.backend], 1.0 if status.state == "up" else 0.0)
        held = GaugeMetricFamily("recsvc_events_overlay_events", "Live events held, newer than the model.")
        held.add_metric([], float(status.events))
        lag = GaugeMetricFamily("recsvc_events_overlay_lag_seconds", "Seconds since the last read of the store.")
        lag.add_metric([], status.lag_seconds)
        yield up
        yield held
        yield lag


class EventsServicer(events_pb2_grpc.EventsServicer):
    """``recsvc.v1.Events`` over one :class:`EventsRuntime`."""

    def __init__(self, runtime: EventsRuntime, engines: ModelHolder) -> None:
        assert runtime.store is not None and runtime.overlay is not None
        self._runtime = runtime
        self._store: EventStore = runtime.store
        self._overlay: EventOverlay = runtime.overlay
        self._engines = engines

    def RecordEvents(self, request: events_pb2.RecordEventsRequest, context: grpc.ServicerContext
                     ) -> events_pb2.RecordEventsResponse:
        settings = self._runtime.settings
        result = record_events(self._store, [raw_event(e) for e in request.events], now_ms=int(time.time() * 1000),
                               default_channel=settings.training.default_channel,
                               max_future_seconds=settings.events.max_future_seconds,
                               max_per_call=settings.events.max_per_call, overlay=self._overlay,
                               earliest_ms=ms_of_day(day_of_iso(settings.training.earliest_event_date)))
        self._runtime.count("accepted", result.accepted)
        self._runtime.count("duplicate", result.duplicates)
        self._runtime.count("rejected", len(result.rejected))
        if self._runtime.on_recorded is not None and result.fresh:
            self._runtime.on_recorded(self._engines.current().model, result.fresh)
        return events_pb2.RecordEventsResponse(accepted=result.accepted, duplicates=result.duplicates,
                                               rejected=_rejections(result.rejected))

    def LinkIdentities(self, request: events_pb2.LinkIdentitiesRequest, context: grpc.ServicerContext
                       ) -> events_pb2.LinkIdentitiesResponse:
        model = self._engines.current().model
        result = link_identities(self._store, self._overlay, model,
                                 [(link.alias_id, link.customer_id) for link in request.links],
                                 max_per_call=self._runtime.settings.events.max_per_call)
        return events_pb2.LinkIdentitiesResponse(linked=result.linked, rejected=_rejections(result.rejected))


def start_events(settings: Settings, model: LoadedModel | None = None) -> EventsRuntime:
    """Open the configured store and start following it. A store that cannot be reached at start (Redis
    not up yet) does not stop the server: the overlay starts ``down`` and recovers when the store answers.

    Raises
    ------
    ConfigError
        The events settings are invalid, or the configured SQLite file cannot be opened.
    """
    try:
        store = open_store(settings.events, settings.server.artifact_root)
    except StoreUnavailable as exc:
        if settings.events.backend != "sqlite" or settings.events.sqlite_path:
            raise ConfigError(f"events: {exc}") from exc
        # the default file in a read-only artifact root must not stop a server that never asked for events
        logger.error("events are off: %s; set events.sqlite_path to a writable file (or events.backend)", exc)
        store = None
    runtime = EventsRuntime(settings, store)
    runtime.start(model)
    if store is not None:
        logger.info("events: backend %s, overlay %s", store.backend, runtime.status().state)
    return runtime
