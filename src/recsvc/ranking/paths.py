"""Which ranking path serves a Recommend request, and the candidates it ranks, best first, before filters.

A known customer is ranked by the trained ranker when the model carries one (``learned``), else by weighted
reciprocal rank fusion of the candidate sources (``blend``); a customer the trainer marked cold gets the
LightFM source added to the fusion and never the trained ranker (``coldstart``); a configured channel
policy (keyed by channel row) renames the path and sets its weights and exclusions. Unknown customers get
the sources that need no customer: ``context`` when the request carries known cart items, else
``popular``. :class:`RankingPaths` is built once per engine and is thread-safe (no per-request state).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.ranking.blend import BlendWeights, fuse
from recsvc.ranking.coldstart import ColdStartSource
from recsvc.ranking.learned import LearnedRanker
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.policies import AppliedPolicy, ChannelPolicies
from recsvc.ranking.reasons import Reason
from recsvc.ranking.results import POLICY_BLEND, POLICY_CONTEXT, POLICY_LEARNED, POLICY_POPULAR
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranked:
    """Candidates best first with, per item, the list (index into ``lists``) and position its reason comes
    from; ``policy`` names the ranking path."""

    items: np.ndarray
    scores: np.ndarray
    lists: Sequence[Candidates]
    source: np.ndarray
    position: np.ndarray
    policy: str

    def reasons(self, chosen: np.ndarray, model: LoadedModel, ctx: RankingContext) -> list[Reason]:
        """The reasons of the items at ``chosen``, asked of each source list once for all its items."""
        lists, positions = self.source[chosen], self.position[chosen]
        reasons: list[Reason | None] = [None] * chosen.size
        for source in np.unique(lists).tolist():
            at = np.flatnonzero(lists == source)
            found = self.lists[source].reasons_at(positions[at], model, ctx)
            for i, reason in zip(at.tolist(), found, strict=True):
                reasons[i] = reason
        return [r for r in reasons if r is not None]


class RankingPaths:
    """The ranking paths of one engine: its sources, weights, learned ranker, cold-start source and policies.

    ``learned`` is None when the model has no trained ranker or the engine was given custom sources (tests,
    experiments keep the rank blend they were given).
    """

    def __init__(self, model: LoadedModel, sources: Sequence[CandidateSource], weights: BlendWeights,
                 policies: ChannelPolicies, learned: LearnedRanker | None) -> None:
        self._model = model
        self._sources = tuple(sources)
        self._anonymous_sources = tuple(s for s in self._sources if not s.needs_customer)
        self._weights = weights
        self._policies = policies
        self._learned = learned
        self._coldstart = ColdStartSource(model)

    @property
    def learned(self) -> LearnedRanker | None:
        """The trained ranker of the ``learned`` path (None: rank fusion only)."""
        return self._learned

    def policy(self, customer_row: int, channel_row: int) -> AppliedPolicy | None:
        """The policy of a known customer: cold start when the trainer marked them cold, else the channel's
        configured policy; None for unknown customers and channels without one (the default path)."""
        if customer_row < 0:
            return None
        if self._coldstart.serves(customer_row):
            return self._policies.coldstart(channel_row)
        return self._policies.get(channel_row)

    def rank(self, ctx: RankingContext, n: int, blocked: int, applied: AppliedPolicy | None) -> Ranked:
        """Candidates for ``ctx`` best first, before filters; ``n`` items will be shown and ``blocked`` items
        are known to be filtered out (both size each source's list)."""
        known = ctx.customer_row >= 0
        name = applied.name if applied is not None else ""
        if not known:
            sources: Sequence[CandidateSource] = self._anonymous_sources
            name = POLICY_CONTEXT if ctx.context_items.size else POLICY_POPULAR
        elif self._learned is not None and not (applied is not None and applied.coldstart):
            result = self._learned.rank(ctx)
            pool = result.pool
            return Ranked(pool.items[result.order], result.scores, pool.lists, pool.reason_list[result.order],
                          pool.reason_position[result.order], name or POLICY_LEARNED)
        else:
            sources = self._sources
        weights: BlendWeights = self._weights
        if applied is not None:
            sources = applied.sources((*sources, self._coldstart) if applied.coldstart else sources)
            weights = applied.weights
        k = min(self._model.n_items, max(3 * n, 50) + blocked)  # enough that filters rarely force a fill
        lists = [source.candidates(ctx, k) for source in sources]
        fused = fuse(lists, weights)
        return Ranked(fused.items, fused.scores, tuple(lists), fused.source, fused.position, name or POLICY_BLEND)
