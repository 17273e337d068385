"""The customer's own history in plain orders: the "buy it again" baselines, servable as policies.

Model selection (:mod:`recsvc_training.ranker.selection`) may choose one of these for a channel where the
learned ranker does not beat it on the validation window; they are the evaluation's ``buy_it_again_by_count``
(times bought, ties to the more recent) and ``buy_it_again`` (recency-weighted count) read from the stored
history. The engine fills what they leave with popularity, as the baselines do.
"""

from __future__ import annotations

import abc

import numpy as np

from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, top_k


class _OwnHistorySource(CandidateSource):
    """The customer's history ordered by :meth:`_score` (highest first, ties to the more recent); reason
    BOUGHT_BEFORE."""

    needs_customer = True

    @abc.abstractmethod
    def _score(self, ctx: RankingContext) -> np.ndarray | None:
        """One score per history item (aligned with ``ctx.history``), or None: nothing to say."""

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        hist = ctx.history
        score = self._score(ctx) if len(hist) else None
        if score is None:
            return Candidates.empty(self.name)
        keep = np.flatnonzero(hist.count > 0)
        best = keep[top_k(score[keep], k, tiebreak=hist.last_day[keep].astype(np.float64))]
        items = hist.items[best].astype(np.int64)
        return Candidates.build(self.name, items, score[best], ReasonKind.BOUGHT_BEFORE, items[:, None],
                                days_since=ctx.today - hist.last_day[best].astype(np.int64),
                                source_day=hist.last_day[best], source_channel=hist.last_channel[best],
                                source_store=hist.last_store[best])


class BoughtMostSource(_OwnHistorySource):
    """Items by how many times the customer bought them (net of returns), ties to the more recent."""

    name = "buy_it_again_by_count"

    def _score(self, ctx: RankingContext) -> np.ndarray | None:
        return np.asarray(ctx.history.count, dtype=np.float64)


class BoughtRecentlySource(_OwnHistorySource):
    """Items by recency-weighted purchase count (the stored ``hist_decayed``), ties to the more recent; where
    the set stores none, or the history no longer lines up with the stored row (live events changed it), the
    count decayed from the last purchase with the same half-life."""

    name = "buy_it_again"

    def _score(self, ctx: RankingContext) -> np.ndarray | None:
        m, hist = self.model, ctx.history
        decayed = m.hist_decayed
        if decayed is not None and ctx.customer_row >= 0:
            lo, hi = int(m.hist_indptr[ctx.customer_row]), int(m.hist_indptr[ctx.customer_row + 1])
            if hi - lo == len(hist):
                return np.asarray(decayed[lo:hi], dtype=np.float64)
        days = np.maximum(ctx.today - hist.last_day.astype(np.int64), 0)
        return np.asarray(hist.count, dtype=np.float64) * 0.5 ** (days / m.hist_decayed_half_life_days)
