"""Popularity: recency-decayed, overall, per channel and per store, plus the optional weekly trend.

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
pop_global         float32, [n_items]          recency-decayed popularity, all channels
pop_channel        float32, [n_ch, n_items]    recency-decayed popularity per channel
pop_store_items    int32, [n_stores, k]        most popular items per store (-1 = pad)
pop_store_scores   float32, [n_stores, k]      their scores
item_trend         float32, [n_items]          optional: log1p(distinct buyers in the last 7
                                               days x 4) - log1p(those in the last 28), as of
                                               ``data_end_day`` (> 0 rising)
=================  ==========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, finite, optional_array, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.stores import Stores

POP_GLOBAL = "pop_global"
POP_CHANNEL = "pop_channel"
POP_STORE_ITEMS = "pop_store_items"
POP_STORE_SCORES = "pop_store_scores"
ITEM_TREND = "item_trend"


@dataclass(frozen=True, eq=False)
class Popularity(Part):
    NAME = "popularity"
    REQUIRED = True
    ARRAYS = (POP_GLOBAL, POP_CHANNEL, POP_STORE_ITEMS, POP_STORE_SCORES, ITEM_TREND)
    OPTIONAL_ARRAYS = (ITEM_TREND,)

    global_: np.ndarray
    channel: np.ndarray
    store_items: np.ndarray
    store_scores: np.ndarray
    trend: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {POP_GLOBAL: self.global_, POP_CHANNEL: self.channel, POP_STORE_ITEMS: self.store_items,
                  POP_STORE_SCORES: self.store_scores}
        if self.trend is not None:
            arrays[ITEM_TREND] = self.trend
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Popularity:
        n_items, n_stores = ctx.get(Catalog).n_items, ctx.get(Stores).n_stores
        pop_global = array(arrays, POP_GLOBAL, "f", (n_items,))
        pop_channel = array(arrays, POP_CHANNEL, "f", (ctx.n_channels, n_items))
        finite(POP_GLOBAL, pop_global)
        finite(POP_CHANNEL, pop_channel)
        store_items = array(arrays, POP_STORE_ITEMS, "iu", (n_stores, None))
        rows_within(POP_STORE_ITEMS, store_items, n_items, allow_missing=True)
        store_scores = array(arrays, POP_STORE_SCORES, "f", store_items.shape)
        return cls(pop_global, pop_channel, store_items, store_scores,
                   optional_array(arrays, ITEM_TREND, "f", (n_items,)))
