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
pop_newcomer_      float32, [n_ch, n_items]    optional: the popular list for a customer the
channel                                        model does not know (higher first), by the
                                               definition chosen per channel on a validation
                                               window (``extra.newcomer_popularity``)
pop_newcomer_      float32, [n_items]          optional: the same for an unknown channel
global
=================  ==========================  =============================================

Without the newcomer arrays (an older set, or a run that could not validate) unknown customers get
``pop_channel`` / ``pop_global``, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array, finite, optional_array, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.stores import Stores

POP_GLOBAL = "pop_global"
POP_CHANNEL = "pop_channel"
POP_STORE_ITEMS = "pop_store_items"
POP_STORE_SCORES = "pop_store_scores"
ITEM_TREND = "item_trend"
POP_NEWCOMER_CHANNEL = "pop_newcomer_channel"
POP_NEWCOMER_GLOBAL = "pop_newcomer_global"
NEWCOMER_EXTRA = "newcomer_popularity"


@dataclass(frozen=True, eq=False)
class Popularity(Part):
    NAME = "popularity"
    REQUIRED = True
    ARRAYS = (POP_GLOBAL, POP_CHANNEL, POP_STORE_ITEMS, POP_STORE_SCORES, ITEM_TREND, POP_NEWCOMER_CHANNEL,
              POP_NEWCOMER_GLOBAL)
    OPTIONAL_ARRAYS = (ITEM_TREND, POP_NEWCOMER_CHANNEL, POP_NEWCOMER_GLOBAL)
    EXTRA_KEYS = (NEWCOMER_EXTRA,)

    global_: np.ndarray
    channel: np.ndarray
    store_items: np.ndarray
    store_scores: np.ndarray
    trend: np.ndarray | None = None
    newcomer_channel: np.ndarray | None = None
    newcomer_global: np.ndarray | None = None
    #: What chose the newcomer arrays (definition per channel, validation numbers); empty without them.
    newcomer_meta: Mapping[str, Any] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {POP_GLOBAL: self.global_, POP_CHANNEL: self.channel, POP_STORE_ITEMS: self.store_items,
                  POP_STORE_SCORES: self.store_scores}
        if self.trend is not None:
            arrays[ITEM_TREND] = self.trend
        if self.newcomer_channel is not None and self.newcomer_global is not None:
            arrays[POP_NEWCOMER_CHANNEL] = self.newcomer_channel
            arrays[POP_NEWCOMER_GLOBAL] = self.newcomer_global
        return arrays

    def to_extra(self) -> dict[str, Any]:
        return {NEWCOMER_EXTRA: dict(self.newcomer_meta)} if self.newcomer_meta else {}

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
        newcomer_channel = optional_array(arrays, POP_NEWCOMER_CHANNEL, "f", (ctx.n_channels, n_items))
        newcomer_global = optional_array(arrays, POP_NEWCOMER_GLOBAL, "f", (n_items,))
        if (newcomer_channel is None) != (newcomer_global is None):
            raise ArtifactError(f"{POP_NEWCOMER_CHANNEL} and {POP_NEWCOMER_GLOBAL} come together or not at all")
        for name, values in ((POP_NEWCOMER_CHANNEL, newcomer_channel), (POP_NEWCOMER_GLOBAL, newcomer_global)):
            if values is not None:
                finite(name, values)
        return cls(pop_global, pop_channel, store_items, store_scores,
                   optional_array(arrays, ITEM_TREND, "f", (n_items,)), newcomer_channel, newcomer_global,
                   dict(ctx.extra.get(NEWCOMER_EXTRA) or {}))
