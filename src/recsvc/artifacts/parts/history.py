"""Each customer's purchases (net of returns), one CSR row per customer.

==================  =========================  =============================================
array               dtype, shape               meaning
==================  =========================  =============================================
hist_indptr         int64, [n_customers + 1]   CSR rows: each customer's purchased items
hist_items          int32, [nnz]               item row
hist_count          float32, [nnz]             net purchases (returns subtracted), > 0
hist_first_day      int32, [nnz]               first purchase, days since 1970-01-01
hist_last_day       int32, [nnz]               last purchase, days since 1970-01-01
hist_last_channel   int16, [nnz]               channel index of the last purchase
hist_last_store     int32, [nnz]               row in ``store_ids`` of the last purchase, -1
hist_decayed        float32, [nnz]             optional: recency-weighted purchase count at
                                               ``data_end_day`` (half-life in
                                               ``extra.hist_decayed_half_life_days``)
==================  =========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, csr_rows, optional_array, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

HIST_INDPTR = "hist_indptr"
HIST_ITEMS = "hist_items"
HIST_COUNT = "hist_count"
HIST_FIRST_DAY = "hist_first_day"
HIST_LAST_DAY = "hist_last_day"
HIST_LAST_CHANNEL = "hist_last_channel"
HIST_LAST_STORE = "hist_last_store"
HIST_DECAYED = "hist_decayed"
#: ``extra`` key: the half-life (days) behind ``hist_decayed``; 60 for sets that do not say.
HALF_LIFE_EXTRA = "hist_decayed_half_life_days"
DEFAULT_HALF_LIFE_DAYS = 60.0


@dataclass(frozen=True, eq=False)
class PurchaseHistory(Part):
    NAME = "history"
    REQUIRED = True
    ARRAYS = (HIST_INDPTR, HIST_ITEMS, HIST_COUNT, HIST_FIRST_DAY, HIST_LAST_DAY, HIST_LAST_CHANNEL,
              HIST_LAST_STORE, HIST_DECAYED)
    OPTIONAL_ARRAYS = (HIST_DECAYED,)
    EXTRA_KEYS = (HALF_LIFE_EXTRA,)

    indptr: np.ndarray
    items: np.ndarray
    count: np.ndarray
    first_day: np.ndarray
    last_day: np.ndarray
    last_channel: np.ndarray
    last_store: np.ndarray
    decayed: np.ndarray | None = None
    decayed_half_life_days: float = DEFAULT_HALF_LIFE_DAYS

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {HIST_INDPTR: self.indptr, HIST_ITEMS: self.items, HIST_COUNT: self.count,
                  HIST_FIRST_DAY: self.first_day, HIST_LAST_DAY: self.last_day,
                  HIST_LAST_CHANNEL: self.last_channel, HIST_LAST_STORE: self.last_store}
        if self.decayed is not None:
            arrays[HIST_DECAYED] = self.decayed
        return arrays

    def to_extra(self) -> dict[str, Any]:
        return {HALF_LIFE_EXTRA: self.decayed_half_life_days}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> PurchaseHistory:
        indptr = array(arrays, HIST_INDPTR, "iu", (ctx.get(Customers).n_customers + 1,))
        nnz = csr_rows(HIST_INDPTR, indptr)
        items = array(arrays, HIST_ITEMS, "iu", (nnz,))
        rows_within(HIST_ITEMS, items, ctx.get(Catalog).n_items)
        return cls(indptr, items, array(arrays, HIST_COUNT, "f", (nnz,)), array(arrays, HIST_FIRST_DAY, "iu", (nnz,)),
                   array(arrays, HIST_LAST_DAY, "iu", (nnz,)), array(arrays, HIST_LAST_CHANNEL, "iu", (nnz,)),
                   array(arrays, HIST_LAST_STORE, "iu", (nnz,)), optional_array(arrays, HIST_DECAYED, "f", (nnz,)),
                   float(ctx.extra.get(HALF_LIFE_EXTRA, DEFAULT_HALF_LIFE_DAYS)))
