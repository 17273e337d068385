"""Feedback and experiments in one server process: ids, arms, the served log and the online Prometheus metrics.

:class:`FeedbackRuntime` is what the Recommender servicer calls instead of the engine: it resolves the
customer, picks the arm (:mod:`recsvc.feedback.experiments`), answers through the arm's engine, names the
answer with a new ``recommendation_id`` and queues it for the log (:mod:`recsvc.feedback.log`). The Events
servicer hands it every newly recorded event, and events carrying an id are counted for the answer they
name (:func:`recsvc.feedback.attribution.by_id`, the report's rule).

Metrics (labels ``channel, store_id, policy, model_version, arm``): ``recsvc_recommendations_served_total``;
``recsvc_online_events_total{event}`` (impressions, clicks, carts and purchases credited by id) and
``recsvc_online_revenue_total``; ``recsvc_online_not_attributed_total{reason}``; ``recsvc_served_log_total``
``{result=written|dropped_queue_full|dropped_store_down}``. Purchases credited by the attribution window (no
id) are only in the report: finding them needs every answer to the customer, which a request must not wait
for. Counts are per process: sum them over workers and replicas (``sum by (...)``), as for every counter.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from recsvc.artifacts.store import store_for
from recsvc.config import Settings
from recsvc.events.overlay import EventOverlay
from recsvc.events.store import EventStore, StoreUnavailable
from recsvc.events.validation import EventRecord
from recsvc.feedback.attribution import ATTRIBUTED_TYPES, Attribution, by_id
from recsvc.feedback.experiments import Arm, ArmEngines, Experiment, recommend_in_arm
from recsvc.feedback.ids import RecommendationIds
from recsvc.feedback.log import ServedLog
from recsvc.feedback.metrics import DIMENSIONS
from recsvc.feedback.served import BUNDLE, RECOMMEND, ServedRecommendation
from recsvc.ids import clean_id
from recsvc.ranking import BundleQuery, BundleResult, RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.ranking.model import LoadedModel
from recsvc.server.versions import load_version

logger = logging.getLogger(__name__)

#: Answers this process keeps in memory by id, so feedback on its own recent answers needs no store read.
RECENT_ANSWERS = 20_000
#: Known customers' resolved ids kept per process (cleared when full or when the model changes).
RESOLVED_CACHE = 200_000


class FeedbackRuntime:
    """One process's experiment, id source, served log and online counters.

    ``store`` None (events off): ids and arms still work, nothing is logged and feedback is not counted.
    """

    def __init__(self, settings: Settings, store: EventStore | None = None, overlay: EventOverlay | None = None
                 ) -> None:
        self.settings = settings
        self.experiment = Experiment(settings.experiments)
        server = settings.server
        self._engines = ArmEngines(server, loader=lambda version: load_version(store_for(server), version, server))
        self._ids = RecommendationIds()
        self._store = store
        self._overlay = overlay
        feedback = settings.feedback
        self.log = (ServedLog(store, feedback.log_queue_size, feedback.log_flush_seconds)
                    if store is not None and feedback.log_served else None)
        self._lock = threading.Lock()
        self._served: dict[tuple[str, ...], int] = {}
        self._events: dict[tuple[str, ...], int] = {}
        self._revenue: dict[tuple[str, ...], float] = {}
        self._refused: dict[str, int] = {}
        self._recent: OrderedDict[str, ServedRecommendation] = OrderedDict()
        self._resolved: dict[str, str] = {}
        self._resolved_model: LoadedModel | None = None
        if self.experiment.running:
            logger.info("experiment %r: %s", self.experiment.name,
                        ", ".join(f"{a.name} {a.high - a.low:.0%}" for a in self.experiment.arms))

    # ----------------------------------------------------------------------------------------- serving

    def customer_key(self, model: LoadedModel, customer_id: str) -> str:
        """The resolved customer: the model's id (through any alias), else the id live links resolve it to,
        else the cleaned id itself; "" for an anonymous request. Known customers are cached per model (a
        model's aliases never change; resolving costs more than the rest of the log together)."""
        customer_id = clean_id(customer_id)
        if not customer_id:
            return ""
        cache = self._resolved
        if self._resolved_model is not model:
            cache = self._resolved = {}
            self._resolved_model = model
        found = cache.get(customer_id)
        if found is not None:
            return found
        row = model.resolve_customer(customer_id)
        if row >= 0:
            if len(cache) >= RESOLVED_CACHE:
                cache.clear()
            found = cache[customer_id] = model.customer_id(row)
            return found
        return self._unknown(model, customer_id)

    def _unknown(self, model: LoadedModel, customer_id: str) -> str:
        """A customer the model does not know: the id live links resolve it to (not cached: a link may come)."""
        if self._overlay is not None and customer_id:
            return self._overlay.resolve(model, customer_id)[1]
        return customer_id

    def recommend(self, engine: RecommendationEngine, query: RecommendQuery
                  ) -> tuple[RecommendResult, str, str]:
        """The answer, its recommendation id and the arm's name ("" outside any experiment)."""
        live = query.live
        arm: Arm | None = None
        customer = ""
        if self.experiment.running:  # the arm decides how to rank: resolve first
            customer = live.customer_id if live is not None else self.customer_key(engine.model, query.customer_id)
            arm = self.experiment.assign(customer)
        result = recommend_in_arm(self._engines, engine, arm, query,
                                  self._overlay.activity if self._overlay is not None else None)
        if not self.experiment.running:  # the engine resolved the customer already
            customer = (result.resolved_customer_id or (live.customer_id if live is not None else
                                                        self._unknown(engine.model, query.customer_id)))
        rid = self._logged(RECOMMEND, result.model_version, result.policy, arm, query.channel, query.store_id,
                           customer, [s.item_id for s in result.items])
        return result, rid, arm.name if arm is not None else ""

    def bundle(self, engine: RecommendationEngine, query: BundleQuery) -> tuple[BundleResult, str, str]:
        """A RecommendBundle answer (every arm is served as usual: bundles complete a basket), its id and arm."""
        customer = query.live.customer_id if query.live is not None else self.customer_key(engine.model,
                                                                                            query.customer_id)
        arm = self.experiment.assign(customer)
        result = engine.bundle(query)
        items = [s.item_id for s in result.items]
        if result.bundle is not None:
            shown = set(items)
            items += [s.item_id for s in result.bundle.items if s.item_id not in shown]
        rid = self._logged(BUNDLE, result.model_version, "bundle", arm, query.channel, query.store_id, customer,
                           items)
        return result, rid, arm.name if arm is not None else ""

    def _logged(self, kind: str, version: str, policy: str, arm: Arm | None, channel: str, store_id: str,
                customer: str, items: Sequence[str]) -> str:
        rid = self._ids.new()
        arm_name = arm.name if arm is not None else ""
        key = (channel, store_id, policy, version, arm_name)
        with self._lock:
            self._served[key] = self._served.get(key, 0) + 1
        if self.log is not None:
            served = ServedRecommendation(rid, int(time.time() * 1000), kind, version, policy, arm_name, channel,
                                          store_id, customer, tuple(items))
            self.log.put(served)
            recent = self._recent
            recent[rid] = served
            if len(recent) > RECENT_ANSWERS:
                with contextlib.suppress(KeyError):  # another thread evicted first
                    recent.popitem(last=False)
        return rid

    # ------------------------------------------------------------------------------------------ feedback

    def on_recorded(self, model: LoadedModel, events: Iterable[EventRecord]) -> None:
        """Count newly recorded feedback events that carry an id for the answer they name (runs on the
        RecordEvents thread, after the commit; a store read only for answers of other processes)."""
        with_id = [e for e in events if e.recommendation_id and e.event in ATTRIBUTED_TYPES]
        if not with_id or self._store is None:
            return
        answers: dict[str, ServedRecommendation] = {}
        missing: list[str] = []
        for e in with_id:
            found = self._recent.get(e.recommendation_id)
            if found is not None:
                answers[e.recommendation_id] = found
            else:
                missing.append(e.recommendation_id)
        if missing:
            try:
                answers.update(self._store.served_by_id(missing))
            except StoreUnavailable as exc:
                logger.warning("online metrics: cannot look up %d answers: %s", len(missing), exc)
                return
        for e in with_id:
            outcome = by_id(e, answers.get(e.recommendation_id), lambda c: self.customer_key(model, c))
            with self._lock:
                if isinstance(outcome, Attribution):
                    s = outcome.served
                    key = (s.channel, s.store_id, s.policy, s.model_version, s.arm)
                    self._events[(e.event, *key)] = self._events.get((e.event, *key), 0) + 1
                    if outcome.revenue:
                        self._revenue[key] = self._revenue.get(key, 0.0) + outcome.revenue
                elif outcome is not None:
                    self._refused[outcome] = self._refused.get(outcome, 0) + 1

    # ------------------------------------------------------------------------------------------- metrics

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_FeedbackCollector(self))

    def snapshot(self) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int],
                                dict[tuple[str, ...], float], dict[str, int]]:
        with self._lock:
            return dict(self._served), dict(self._events), dict(self._revenue), dict(self._refused)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class _FeedbackCollector(Collector):
    def __init__(self, runtime: FeedbackRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        served, events, revenue, refused = self._runtime.snapshot()
        labels = list(DIMENSIONS)
        answers = CounterMetricFamily("recsvc_recommendations_served", "Recommend and RecommendBundle answers "
                                      "served, by channel, store, policy, model version and experiment arm.",
                                      labels=labels)
        for key, n in served.items():
            answers.add_metric(list(key), n)
        credited = CounterMetricFamily("recsvc_online_events", "Impressions, clicks, carts and purchases credited "
                                       "by recommendation_id to the answer they follow from.",
                                       labels=["event", *labels])
        for key, n in events.items():
            credited.add_metric(list(key), n)
        money = CounterMetricFamily("recsvc_online_revenue", "Revenue (quantity x price) of purchases credited "
                                    "by recommendation_id.", labels=labels)
        for key, value in revenue.items():
            money.add_metric(list(key), value)
        missed = CounterMetricFamily("recsvc_online_not_attributed", "Feedback events with a recommendation_id "
                                     "not credited: unmatched (unknown id), foreign (another customer's answer), "
                                     "not_suggested (an item the answer did not suggest).", labels=["reason"])
        for reason, n in refused.items():
            missed.add_metric([reason], n)
        yield answers
        yield credited
        yield money
        yield missed
        log = self._runtime.log
        if log is not None:
            status = log.status()
            written = CounterMetricFamily("recsvc_served_log", "Answers of the served-recommendation log, by "
                                          "what happened to them.", labels=["result"])
            written.add_metric(["written"], status.written)
            written.add_metric(["dropped_queue_full"], status.dropped_full)
            written.add_metric(["dropped_store_down"], status.dropped_store)
            yield written


def start_feedback(settings: Settings, store: EventStore | None, overlay: EventOverlay | None) -> FeedbackRuntime:
    """The process's feedback runtime on the events runtime's store and overlay (either may be None)."""
    return FeedbackRuntime(settings, store, overlay)
