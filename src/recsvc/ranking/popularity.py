"""Popular items: the store's top list when the request names a known store, then the channel's, else global.

Popularity is the fallback for every request (anonymous customers, filters that empty the personal list), so
it must reach deep into the catalog cheaply: the model precomputes the popularity orders at load and a
request reads a prefix of them.

A customer the model does not know (``customer_row == -1``) gets the *newcomer* lists when the set carries
them (``pop_newcomer_channel`` / ``pop_newcomer_global``: the popularity definition the trainer chose per
channel on the new customers of a validation window, :mod:`recsvc_training.models.newcomers`); known
customers keep the recency-decayed lists, which the learned ranker was trained with.
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.artifacts.parts.popularity import Popularity
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, isin

logger = logging.getLogger(__name__)


def newcomer_orders(model: LoadedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(channel orders [n_ch, n_items], channel values, global order [n_items], global values)`` of the
    newcomer lists, most popular first (ties by row), or None when the set has none."""
    part = model.parts[Popularity]
    if part.newcomer_channel is None or part.newcomer_global is None:
        return None
    global_order = np.argsort(-part.newcomer_global, kind="stable").astype(np.int64)
    channel_orders = np.stack([np.argsort(-part.newcomer_channel[c], kind="stable").astype(np.int64)
                               for c in range(part.newcomer_channel.shape[0])]) if part.newcomer_channel.shape[0] \
        else np.zeros((0, model.n_items), dtype=np.int64)
    for values in (global_order, channel_orders):
        values.flags.writeable = False
    return channel_orders, part.newcomer_channel, global_order, part.newcomer_global


class PopularitySource(CandidateSource):
    """Store top list (POPULAR_IN_STORE), continued by the channel's order (POPULAR_ON_CHANNEL) or, for a
    channel the model has no data for, the global order (POPULAR). ``k`` up to the catalog size is cheap.
    Unknown customers read the newcomer orders instead, when the set has them."""

    name = "popularity"

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self._newcomer = newcomer_orders(model)

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
        newcomer = self._newcomer if ctx.customer_row < 0 else None
        if ctx.channel_row >= 0:
            order = m.pop_order_channel[ctx.channel_row] if newcomer is None else newcomer[0][ctx.channel_row]
            values = m.pop_channel[ctx.channel_row] if newcomer is None else newcomer[1][ctx.channel_row]
            kind = ReasonKind.POPULAR_ON_CHANNEL
        elif newcomer is None:
            order, values, kind = m.pop_order_global, m.pop_global, ReasonKind.POPULAR
        else:
            order, values, kind = newcomer[2], newcomer[3], ReasonKind.POPULAR
        rest = order[: k + store_items.size]
        if store_items.size:
            rest = rest[~isin(rest, store_items)]
        rest = rest[: k - store_items.size]
        items = np.concatenate([store_items, rest])
        scores = np.concatenate([store_scores.astype(np.float32), values[rest].astype(np.float32)])
        kinds = np.concatenate([np.full(store_items.size, ReasonKind.POPULAR_IN_STORE, dtype=np.int8),
                                np.full(rest.size, kind, dtype=np.int8)])
        return Candidates.build(self.name, items, scores, kinds)
