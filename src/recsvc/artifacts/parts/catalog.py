"""The catalog: every item the model knows, sorted by id, with what a response shows of it.

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
item_ids           U, [n_items]                sorted item ids (an item's row is its index)
item_titles        U, [n_items]                display titles
item_categories    U, [n_items]                category
item_prices        float32, [n_items]          catalog price (NaN = unknown)
item_channels      bool, [n_items, n_ch]       sellable on channel ``manifest.channels[c]``
=================  ==========================  =============================================

The *catalog id* (:func:`catalog_id`) names this exact set of item ids; the manifest records it and every
stock snapshot says which catalog it belongs to (:mod:`recsvc.artifacts.stock`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, sorted_unique

ITEM_IDS = "item_ids"
ITEM_TITLES = "item_titles"
ITEM_CATEGORIES = "item_categories"
ITEM_PRICES = "item_prices"
ITEM_CHANNELS = "item_channels"


def catalog_id(item_ids: np.ndarray) -> str:
    """A short name of a set of item ids: sha256 of the sorted ids, 16 hex digits; the same for any order
    and any unicode width of the array. Hashed as UTF-32 records at the width of the longest id, one pass in
    C: it runs at every load, and joining a million Python strings instead costs several times as much."""
    ids = np.asarray(item_ids)
    ids = ids if ids.dtype.kind == "U" else ids.astype(np.str_)
    if ids.size > 1 and not np.all(ids[1:] >= ids[:-1]):  # a set's ids are stored sorted: no sort then
        ids = np.sort(ids)
    width = 1
    if ids.size:
        chars = np.ascontiguousarray(ids).view(np.uint32).reshape(ids.size, -1)  # UTF-32, NUL-padded
        used = np.flatnonzero(chars.any(axis=0))
        width = int(used[-1]) + 1 if used.size else 1
    digest = hashlib.sha256(f"U{width}:".encode())  # fixed-width records: the width makes them unambiguous
    digest.update(np.ascontiguousarray(ids, dtype=f"<U{max(width, 1)}").tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Catalog(Part):
    NAME = "catalog"
    REQUIRED = True
    ARRAYS = (ITEM_IDS, ITEM_TITLES, ITEM_CATEGORIES, ITEM_PRICES, ITEM_CHANNELS)

    item_ids: np.ndarray
    titles: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    channels: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {ITEM_IDS: self.item_ids, ITEM_TITLES: self.titles, ITEM_CATEGORIES: self.categories,
                ITEM_PRICES: self.prices, ITEM_CHANNELS: self.channels}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Catalog:
        ids = array(arrays, ITEM_IDS, "U", (None,))
        n = ids.shape[0]
        sorted_unique(ITEM_IDS, ids)
        return cls(ids, array(arrays, ITEM_TITLES, "U", (n,)), array(arrays, ITEM_CATEGORIES, "U", (n,)),
                   array(arrays, ITEM_PRICES, "f", (n,)), array(arrays, ITEM_CHANNELS, "b", (n, ctx.n_channels)))
