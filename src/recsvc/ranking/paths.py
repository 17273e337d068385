"""Which ranking path serves a Recommend request, and the candidates it ranks, best first, before filters.

A known customer is ranked by the trained ranker when the model carries one (``learned``), else by weighted
reciprocal rank fusion of the candidate sources (``blend``); a customer the trainer marked cold gets the
LightFM source added to the fusion and never the trained ranker (``coldstart``); a configured channel
policy (keyed by channel row) renames the path and sets its weights and exclusions. Unknown customers get
the sources that need no customer: ``context`` when the request carries known cart items, else
``popular``. :class:`RankingPaths` is built once per engine and is thread-safe (no per-request state).

Model selection: the trainer compares the learned ranker with the servable baselines on a validation window,
per channel (:mod:`recsvc_training.ranker.selection`), and records the choice with the ranker
(``extra["ranker"]["selection"]``). A known customer on a channel where a baseline won is served that
baseline's list alone (policy named after it, e.g. ``tifu_knn``), filled with popularity by the engine; a
configured channel policy still overrides the choice (the operator's word), and cold customers keep theirs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.parts.ranker import RankerPart
from recsvc.ranking.als import AlsSource
from recsvc.ranking.blend import BlendWeights, fuse
from recsvc.ranking.coldstart import ColdStartSource
from recsvc.ranking.learned import LearnedRanker
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.next_basket import NextBasketSource
from recsvc.ranking.own_history import BoughtMostSource, BoughtRecentlySource
from recsvc.ranking.policies import AppliedPolicy, ChannelPolicies
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.reasons import Reason
from recsvc.ranking.results import POLICY_BLEND, POLICY_CONTEXT, POLICY_LEARNED, POLICY_POPULAR
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext

logger = logging.getLogger(__name__)

#: Baselines the server can serve as a whole policy, by the evaluation's baseline name: model selection
#: chooses among these and ``learned``.
SERVABLE_BASELINES: dict[str, type[CandidateSource]] = {
    "tifu_knn": NextBasketSource,
    "buy_it_again_by_count": BoughtMostSource,
    "buy_it_again": BoughtRecentlySource,
    "als": AlsSource,
    "popularity": PopularitySource,
}
#: Key of the selection for channels without their own (and unknown channels).
ANY_CHANNEL = "*"


def model_selection(model: LoadedModel) -> dict[str, str]:
    """The trainer's choice per channel name (and :data:`ANY_CHANNEL`): ``learned`` or a baseline name; empty
    for a set without a learned ranker or without a selection (older sets: the ranker serves)."""
    part = model.parts.get(RankerPart)
    chosen = ((part.stats.get("selection") or {}).get("chosen") or {}) if part is not None else {}
    return {str(k): str(v) for k, v in chosen.items() if v == POLICY_LEARNED or v in SERVABLE_BASELINES}


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
        self._baselines = {name: kind(model) for name, kind in SERVABLE_BASELINES.items()}
        chosen = model_selection(model) if learned is not None else {}
        fallback = chosen.get(ANY_CHANNEL, POLICY_LEARNED)
        #: The chosen policy per channel row (index ``-1``, the last, is an unknown channel).
        self._chosen = tuple(chosen.get(name, fallback) for name in (*model.channels, ANY_CHANNEL))
        if any(c != POLICY_LEARNED for c in self._chosen):
            logger.info("model selection: %s", ", ".join(f"{name} -> {c}" for name, c in
                                                          zip((*model.channels, ANY_CHANNEL), self._chosen,
                                                              strict=True)))

    def chosen(self, channel_row: int) -> str:
        """The policy model selection chose for known customers on ``channel_row`` (``-1``: unknown channel)."""
        return self._chosen[channel_row] if channel_row < len(self._chosen) - 1 else self._chosen[-1]

    def rank_baseline(self, ctx: RankingContext, name: str, k: int) -> Ranked:
        """The servable baseline ``name``'s list for ``ctx`` alone, best first (the engine fills the rest)."""
        found = self._baselines[name].candidates(ctx, k)
        return Ranked(found.items, found.scores.astype(np.float64), (found,), np.zeros(len(found), dtype=np.int64),
                      np.arange(len(found), dtype=np.int64), name)

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

    def learned_path(self, customer_row: int, channel_row: int, applied: AppliedPolicy | None) -> str | None:
        """The policy name :meth:`rank` reports when it ranks this customer with the learned ranker's whole
        pool (what a batch may rank ahead, :meth:`LearnedRanker.rank_many`); None for every other path."""
        if customer_row < 0 or self._learned is None or (applied is not None and applied.coldstart):
            return None
        if applied is None and self.chosen(channel_row) != POLICY_LEARNED:
            return None
        return (applied.name if applied is not None else "") or POLICY_LEARNED

    def rank(self, ctx: RankingContext, n: int, blocked: int, applied: AppliedPolicy | None) -> Ranked:
        """Candidates for ``ctx`` best first, before filters; ``n`` items will be shown and ``blocked`` items
        are known to be filtered out (both size each source's list)."""
        known = ctx.customer_row >= 0
        name = applied.name if applied is not None else ""
        if not known:
            sources: Sequence[CandidateSource] = self._anonymous_sources
            name = POLICY_CONTEXT if ctx.context_items.size else POLICY_POPULAR
        elif self._learned is not None and not (applied is not None and applied.coldstart):
            chosen = self.chosen(ctx.channel_row)
            if applied is None and chosen != POLICY_LEARNED:
                return self.rank_baseline(ctx, chosen, min(self._model.n_items, max(3 * n, 50) + blocked))
            result = self._learned.rank(ctx)
            pool = result.pool
            return Ranked(pool.items[result.order], result.scores, pool.lists, pool.reason_list[result.order],
                          pool.reason_position[result.order], name or POLICY_LEARNED)
        else:
            sources = self._sources
        weights: BlendWeights = self._weights
        if applied is not None and applied.coldstart and self._coldstart.chosen:
            # the trainer validated the cold-start answer as it is: fusing other sources into it would serve
            # something nobody measured (a cold customer has no history for them anyway)
            sources = (self._coldstart,)
            weights = dataclasses.replace(applied.weights, coldstart=1.0)  # one list: its own order
        elif applied is not None:
            sources = applied.sources((*sources, self._coldstart) if applied.coldstart else sources)
            weights = applied.weights
        k = min(self._model.n_items, max(3 * n, 50) + blocked)  # enough that filters rarely force a fill
        lists = [source.candidates(ctx, k) for source in sources]
        fused = fuse(lists, weights)
        return Ranked(fused.items, fused.scores, tuple(lists), fused.source, fused.position, name or POLICY_BLEND)
