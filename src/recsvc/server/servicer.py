"""The gRPC servicer: converts messages to core queries and core results to messages, nothing else.

Ranking, validation and fallbacks live in :mod:`recsvc.ranking`; errors raised there become statuses in
:mod:`recsvc.server.interceptors`. Each RPC takes the current engine from the model holder exactly once, at
its start, so a model swap between two requests never mixes two versions in one response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from recsvc.config import Settings
from recsvc.events.overlay import CustomerActivity
from recsvc.ranking import (
    BundleQuery,
    RecommendQuery,
    Suggestion,
)
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.profile import customer_profile
from recsvc.server.feedback import FeedbackRuntime
from recsvc.server.holder import ModelHolder
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc

logger = logging.getLogger(__name__)


def add_scored_items(target: Any, suggestions: Iterable[Suggestion]) -> None:
    """Append core suggestions to ``target`` (a repeated ``ScoredItem`` field) as messages; the reason kind
    maps by value.

    Fills each item in place (``add``) and sets only the reason fields that are not their default: building a
    ``Reason`` and a ``ScoredItem`` from keyword arguments and copying them into the response costs about
    twice as much, on every answer. The bytes on the wire are the same (proto3 never sends defaults).
    """
    add = target.add
    for s in suggestions:
        r = s.reason
        reason = add(item_id=s.item_id, score=s.score, title=s.title, category=s.category).reason
        reason.kind = r.kind  # an IntEnum of the same values
        reason.text = r.text
        if r.source_item_ids:
            reason.source_item_ids.extend(r.source_item_ids)
        if r.days_since_last_purchase:
            reason.days_since_last_purchase = r.days_since_last_purchase
        if r.typical_interval_days:
            reason.typical_interval_days = r.typical_interval_days
        if r.source_channel:
            reason.source_channel = r.source_channel
        if r.source_store_id:
            reason.source_store_id = r.source_store_id


def scored_items(suggestions: Iterable[Suggestion]) -> list[recsvc_pb2.ScoredItem]:
    """Core suggestions as ``ScoredItem`` messages (see :func:`add_scored_items`, the cheaper way to fill a
    response)."""
    holder = recsvc_pb2.SimilarItemsResponse()
    add_scored_items(holder.items, suggestions)
    return list(holder.items)


def _ids(values: Sequence[str]) -> tuple[str, ...]:
    """A request's repeated string field as a tuple (most are empty: no copy then)."""
    return tuple(values) if values else ()


#: A customer's live events after the model's cut-off (:meth:`recsvc.server.events.EventsRuntime.activity`).
ActivityLookup = Callable[[LoadedModel, str], CustomerActivity | None]


class RecommenderServicer(recsvc_pb2_grpc.RecommenderServicer):
    """``recsvc.v1.Recommender`` over a :class:`~recsvc.server.holder.ModelHolder`; every response names the
    model version. ``holder.current()`` raises :class:`~recsvc.errors.ModelUnavailable` when no model is loaded.

    ``activity`` (when events are on) adds what customers did since the model's cut-off to their profile and
    to Recommend and RecommendBundle (inside the query: the engine never reads a store). ``feedback`` picks
    the experiment arm, names and logs each Recommend / RecommendBundle answer (default: ids and no log).
    """

    def __init__(self, holder: ModelHolder, activity: ActivityLookup | None = None,
                 feedback: FeedbackRuntime | None = None) -> None:
        self._holder = holder
        self._activity = activity
        self._feedback = feedback or FeedbackRuntime(Settings())

    def _live(self, model: LoadedModel, customer_id: str) -> CustomerActivity | None:
        """The customer's live events after ``model``'s cut-off (None: events off, anonymous, or none)."""
        return self._activity(model, customer_id) if self._activity is not None and customer_id else None

    def Recommend(self, request: recsvc_pb2.RecommendRequest, context: grpc.ServicerContext
                  ) -> recsvc_pb2.RecommendResponse:
        engine = self._holder.current()
        customer_id = request.customer_id
        result, recommendation_id, arm = self._feedback.recommend(engine, RecommendQuery(
            live=self._live(engine.model, customer_id),
            customer_id=customer_id, channel=request.channel, store_id=request.store_id,
            num_items=request.num_items, exclude_item_ids=_ids(request.exclude_item_ids),
            context_item_ids=_ids(request.context_item_ids), include_categories=_ids(request.include_categories),
            exclude_categories=_ids(request.exclude_categories)))
        response = recsvc_pb2.RecommendResponse(
            recommendation_id=recommendation_id, experiment_arm=arm, model_version=result.model_version,
            resolved_customer_id=result.resolved_customer_id, known_customer=result.known_customer,
            policy=result.policy, unknown_channel=result.unknown_channel, fallback=result.fallback)
        add_scored_items(response.items, result.items)
        if result.unknown_item_ids:
            response.unknown_item_ids.extend(result.unknown_item_ids)
        if result.unknown_categories:
            response.unknown_categories.extend(result.unknown_categories)
        if result.notices:
            response.notices.extend(result.notices)
        return response

    def RecommendBundle(self, request: recsvc_pb2.RecommendBundleRequest, context: grpc.ServicerContext
                        ) -> recsvc_pb2.RecommendBundleResponse:
        engine = self._holder.current()
        result, recommendation_id, arm = self._feedback.bundle(engine, BundleQuery(
            live=self._live(engine.model, request.customer_id),
            basket_item_ids=list(request.basket_item_ids), customer_id=request.customer_id,
            channel=request.channel, store_id=request.store_id, num_items=request.num_items,
            bundle_size=request.bundle_size))
        response = recsvc_pb2.RecommendBundleResponse(
            recommendation_id=recommendation_id, experiment_arm=arm, unknown_item_ids=result.unknown_item_ids,
            model_version=result.model_version, unknown_channel=result.unknown_channel,
            fallback=result.fallback, notices=result.notices)
        add_scored_items(response.items, result.items)
        if result.bundle is not None:
            bundle = response.bundle
            bundle.anchor_item_id = result.bundle.anchor_item_id
            bundle.score = result.bundle.score
            add_scored_items(bundle.items, result.bundle.items)
        return response

    def SimilarItems(self, request: recsvc_pb2.SimilarItemsRequest, context: grpc.ServicerContext
                     ) -> recsvc_pb2.SimilarItemsResponse:
        engine = self._holder.current()
        result = engine.similar_items(request.item_id, request.num_items, request.channel)
        response = recsvc_pb2.SimilarItemsResponse(model_version=result.model_version,
                                                   unknown_channel=result.unknown_channel, notices=result.notices)
        add_scored_items(response.items, result.items)
        return response

    def GetModelInfo(self, request: recsvc_pb2.GetModelInfoRequest, context: grpc.ServicerContext
                     ) -> recsvc_pb2.ModelInfo:
        model = self._holder.current().model
        return recsvc_pb2.ModelInfo(
            version=model.version, created_at=model.created_at, input_fingerprint=model.input_fingerprint,
            loaded_at=model.loaded_at, evaluation=model.flat_evaluation(), row_counts=model.int_row_counts(),
            num_items=model.n_items, num_customers=model.n_customers, channels=list(model.channels),
            forced=model.forced)

    def GetCustomerProfile(self, request: recsvc_pb2.GetCustomerProfileRequest, context: grpc.ServicerContext
                           ) -> recsvc_pb2.CustomerProfile:
        model = self._holder.current().model
        live = self._live(model, request.customer_id)
        profile = customer_profile(model, request.customer_id, request.num_purchases, live=live)
        response = recsvc_pb2.CustomerProfile(
            customer_id=profile.customer_id, channels=list(profile.channels), coldstart=profile.coldstart,
            model_version=profile.model_version,
            recent_purchases=[recsvc_pb2.Purchase(item_id=p.item_id, title=p.title, category=p.category,
                                                  channel=p.channel, store_id=p.store_id, date=p.date,
                                                  count=p.count) for p in profile.recent_purchases])
        if profile.rfm is not None:
            r = profile.rfm
            response.rfm.CopyFrom(recsvc_pb2.RfmSegment(
                recency=r.recency, frequency=r.frequency, monetary=r.monetary, segment=r.segment,
                days_since_last_purchase=r.days_since_last_purchase, spend=r.spend))
        return response
