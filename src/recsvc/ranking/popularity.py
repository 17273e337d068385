"""Popular items: the store's top list when the request names a known store, then the channel's, else global.

Popularity is the fallback for every request (anonymous customers, filters that empty the personal list), so
it must reach deep into the catalog cheaply: the model precomputes the popularity orders at load and a
request reads a prefix of them.
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, isin

logger = logging.getLogger(__name__)


class PopularitySource(CandidateSource):
    """Store top list (POPULAR_IN_STORE), continued by the channel's order (POPULAR_ON_CHANNEL) or, for a
    channel the model has no data for, the global order (POPULAR). ``k`` up to the catalog size is cheap."""

    name = "popularity"

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        m = self.model
        k = min(int(k), m.n_items)
        if k <= 0:
            return Candidates.empty(self.name)
        if ctx.store_row >= 0:
            store_items = m.pop_store_items[ctx.store_row].astype(np.int64)
            keep = store_items >= 0
            store_items = store_items[keep][:k]
            store_scores = m.pop_store_scores[ctx.store_row][keep][: store_items.size]
        else:
            store_items = np.zeros(0, dtype=np.int64)
            store_scores = np.zeros(0, dtype=np.float32)
        if ctx.channel_row >= 0:
            order = m.pop_order_channel[ctx.channel_row]
            values = m.pop_channel[ctx.channel_row]
            kind = ReasonKind.POPULAR_ON_CHANNEL
        else:
            order, values, kind = m.pop_order_global, m.pop_global, ReasonKind.POPULAR
        rest = order[: k + store_items.size]
        if store_items.size:
            rest = rest[~isin(rest, store_items)]
        rest = rest[: k - store_items.size]
        items = np.concatenate([store_items, rest])
        scores = np.concatenate([store_scores.astype(np.float32), values[rest].astype(np.float32)])
        kinds = np.concatenate([np.full(store_items.size, ReasonKind.POPULAR_IN_STORE, dtype=np.int8),
                                np.full(rest.size, kind, dtype=np.int8)])
        return Candidates.build(self.name, items, scores, kinds)
