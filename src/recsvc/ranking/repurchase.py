"""Buy it again: the customer's own history, ranked by how due each item is.

An item the customer buys in a rhythm (milk every week, detergent every month) is most worth suggesting when
its usual interval has nearly elapsed. The interval is the customer's own (first to last purchase over the
number of repeat buys) when they bought it at least twice, else the item's median repurchase interval over
all customers, else unknown.
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, top_k

logger = logging.getLogger(__name__)


def repurchase_interval(model: LoadedModel, items: np.ndarray, count: np.ndarray, first_day: np.ndarray,
                        last_day: np.ndarray) -> np.ndarray:
    """Days between purchases of each item (float64, NaN unknown): the customer's own rhythm (first to last
    purchase over the repeat buys) when they bought it at least twice, else the item's median over all
    customers."""
    span = np.asarray(last_day, dtype=np.float64) - np.asarray(first_day, dtype=np.float64)
    own = np.where((count >= 2) & (span > 0), span / np.maximum(count - 1, 1), np.nan)
    return np.where(np.isfinite(own), own, model.item_repurchase_days[items].astype(np.float64))


class RepurchaseSource(CandidateSource):
    """Scores each history item by net count, recency and repurchase rhythm; reason BOUGHT_BEFORE.

    ``score = log1p(count) * (floor + due + recency_weight * rate * exp(-days / recency_days))`` where
    ``due`` is a bell around ``days / interval == 1`` — narrow before the item is due, wide after (an
    overdue staple is still wanted; one bought long before its time is not yet), ``rate`` is the share of
    the item's buyers who buy it again, and ``floor`` lets a frequently bought item count without a rhythm.
    Items scoring below ``min_score`` are not proposed: the blend is rank-based, so a one-off purchase from
    long ago would otherwise borrow the source's high weight (with the defaults a single purchase needs a
    rhythm or a repurchase rate to pass; three purchases pass on their own).
    """

    name = "repurchase"
    needs_customer = True
    uses_channel = False

    floor: float = 0.1
    due_width_before: float = 0.35
    due_width_after: float = 1.0
    recency_days: float = 90.0
    recency_weight: float = 0.3
    min_score: float = 0.135

    @classmethod
    def dueness(cls, days: np.ndarray, interval: np.ndarray) -> np.ndarray:
        """How due each item is, 0..1: the bell around ``days / interval == 1`` (0 where ``interval`` is NaN or
        not positive). Live purchases are hidden by the same measure (:mod:`recsvc.ranking.live`)."""
        known = np.isfinite(interval) & (interval > 0)
        ratio = np.where(known, days / np.where(known, interval, 1.0), 0.0)
        width = np.where(ratio < 1.0, cls.due_width_before, cls.due_width_after)
        return np.where(known, np.exp(-0.5 * ((ratio - 1.0) / width) ** 2), 0.0)

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        hist = ctx.history
        if len(hist) == 0:
            return Candidates.empty(self.name)
        m = self.model
        items = hist.items.astype(np.int64)
        count = np.maximum(hist.count.astype(np.float64), 0.0)
        days = np.maximum(ctx.today - hist.last_day.astype(np.int64), 0)
        interval = repurchase_interval(m, items, count, hist.first_day, hist.last_day)
        known = np.isfinite(interval) & (interval > 0)
        due = self.dueness(days.astype(np.float64), interval)
        rate = m.item_repurchase_rate[items].astype(np.float64)
        rate[np.isnan(rate)] = 0.0  # (np.nan_to_num does the same at ~5x the cost on a short history)
        recency = np.exp(-days / self.recency_days)
        score = np.log1p(count) * (self.floor + due + self.recency_weight * rate * recency)
        best = top_k(score, k)
        best = best[score[best] >= self.min_score]
        return Candidates.build(
            self.name, items[best], score[best], ReasonKind.BOUGHT_BEFORE, items[best][:, None],
            days_since=days[best], interval_days=np.where(known, interval, np.nan)[best],
            source_day=hist.last_day[best], source_channel=hist.last_channel[best],
            source_store=hist.last_store[best])
