"""TIFU-KNN's next-basket list as a candidate source: what the trainer stored for this customer, best first.

The lists come from :mod:`recsvc.artifacts.parts.next_basket` (computed nightly; the server only reads a
row). An item the customer bought before is explained as BOUGHT_BEFORE (with its last purchase), any other as
CUSTOMERS_LIKE_YOU (the customer's nearest neighbours bought it), its reason items the customer's history
items most similar to it (ALS), resolved only for the items shown.
"""

from __future__ import annotations

import numpy as np

from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.ranking.als import most_similar_sources
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext


class NextBasketSource(CandidateSource):
    """The customer's stored TIFU-KNN list (empty for a model without the part or a customer without a row)."""

    name = "tifu_knn"
    needs_customer = True
    uses_channel = False
    max_explain_history: int = 200

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.part: NextBasket | None = model.parts.get(NextBasket)

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        if self.part is None or ctx.customer_row < 0 or k <= 0:
            return Candidates.empty(self.name)
        items, scores = self.part.row(ctx.customer_row)
        items, scores = items[:k].astype(np.int64), scores[:k]
        if items.size == 0:
            return Candidates.empty(self.name)
        hist = ctx.history
        at = hist.positions_of(items)
        bought = at >= 0
        safe = np.maximum(at, 0)
        kinds = np.where(bought, ReasonKind.BOUGHT_BEFORE, ReasonKind.CUSTOMERS_LIKE_YOU).astype(np.int8)
        if len(hist):
            days = np.where(bought, ctx.today - hist.last_day[safe].astype(np.int64), -1)
            day = np.where(bought, hist.last_day[safe], -1)
            channel = np.where(bought, hist.last_channel[safe], -1)
            store = np.where(bought, hist.last_store[safe], -1)
        else:
            days = day = channel = store = np.full(items.size, -1)
        return Candidates.build(self.name, items, scores, kinds, days_since=days, source_day=day,
                                source_channel=channel, source_store=store, resolve_reason_items=self.reason_items)

    def reason_items(self, items: np.ndarray, ctx: RankingContext) -> np.ndarray:
        """An item bought before is its own reason; any other, the most similar recent history items."""
        hist = ctx.history
        out = np.full((items.size, 2), -1, dtype=np.int64)
        bought = hist.positions_of(items) >= 0
        out[bought, 0] = items[bought]
        if (~bought).any() and self.model.n_factors:
            recent = np.argsort(-hist.last_day, kind="stable")[: self.max_explain_history]
            out[~bought] = most_similar_sources(self.model, items[~bought], hist.items[recent].astype(np.int64))
        return out
