"""The gRPC servicer: converts messages to core queries and core results to messages, nothing else.

Ranking, validation and fallbacks live in :mod:`recsvc.ranking`; errors raised there become statuses in
:mod:`recsvc.server.interceptors`. Each RPC takes the current engine from the model holder exactly once, at
its start, so a model swap between two requests never mixes two versions in one response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

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


def scored_items(suggestions: Iterable[Suggestion]) -> list[recsvc_pb2.ScoredItem]:
    """Core suggestions as ``ScoredItem`` messages (the reason kind maps by value)."""
    out = []
    for s in suggestions:
        r = s.reason
        reason = recsvc_pb2.Reason(
            kind=int(r.kind), source_item_ids=list(r.source_item_ids), text=r.text,  # type: ignore[arg-type]
            days_since_last_purchase=r.days_since_last_purchase, typical_interval_days=r.typical_interval_days,
            source_channel=r.source_channel, source_store_id=r.source_store_id)
        out.append(recsvc_pb2.ScoredItem(item_id=s.item_id, score=s.score, title=s.title, category=s.category,
                                         reason=reason))
    return out


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
        result, recommendation_id, arm = self._feedback.recommend(engine, RecommendQuery(
            live=self._live(engine.model, request.customer_id),
            customer_id=request.customer_id, channel=request.channel, store_id=request.store_id,
            num_items=request.num_items, exclude_item_ids=list(request.exclude_item_ids),
            context_item_ids=list(request.context_item_ids), include_categories=list(request.include_categories),
            exclude_categories=list(request.exclude_categories)))
        return recsvc_pb2.RecommendResponse(
            recommendation_id=recommendation_id, experiment_arm=arm,
            items=scored_items(result.items), model_version=result.model_version,
            resolved_customer_id=result.resolved_customer_id, known_customer=result.known_customer,
            policy=result.policy, unknown_item_ids=list(result.unknown_item_ids),
            unknown_categories=list(result.unknown_categories), unknown_channel=result.unknown_channel,
            fallback=result.fallback, notices=list(result.notices))

    def RecommendBundle(self, request: recsvc_pb2.RecommendBundleRequest, context: grpc.ServicerContext
                        ) -> recsvc_pb2.RecommendBundleResponse:
        engine = self._holder.current()
        result, recommendation_id, arm = self._feedback.bundle(engine, BundleQuery(
            live=self._live(engine.model, request.customer_id),
            basket_item_ids=list(request.basket_item_ids), customer_id=request.customer_id,
            channel=request.channel, store_id=request.store_id, num_items=request.num_items,
            bundle_size=request.bundle_size))
        response = recsvc_pb2.RecommendBundleResponse(
            recommendation_id=recommendation_id, experiment_arm=arm,
            items=scored_items(result.items), unknown_item_ids=list(result.unknown_item_ids),
            model_version=result.model_version, unknown_channel=result.unknown_channel,
            fallback=result.fallback, notices=list(result.notices))
        if result.bundle is not None:
            response.bundle.CopyFrom(recsvc_pb2.Bundle(
                anchor_item_id=result.bundle.anchor_item_id, items=scored_items(result.bundle.items),
                score=result.bundle.score))
        return response

    def SimilarItems(self, request: recsvc_pb2.SimilarItemsRequest, context: grpc.ServicerContext
                     ) -> recsvc_pb2.SimilarItemsResponse:
        engine = self._holder.current()
        result = engine.similar_items(request.item_id, request.num_items, request.channel)
        return recsvc_pb2.SimilarItemsResponse(items=scored_items(result.items), model_version=result.model_version,
                                               unknown_channel=result.unknown_channel, notices=list(result.notices))

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
