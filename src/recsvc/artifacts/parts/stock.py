"""The optional training-time stock: the quantities on hand the model was trained with, so a model and its
stock are published, swapped and rolled back as one step.

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
stock_store_ids    U, [n_rows]                 store of each row
stock_item_ids     U, [n_rows]                 item of each row
stock_quantities   float32, [n_rows]           quantity on hand
=================  ==========================  =============================================

Rows sorted by store, then item, one row per pair; semantics in :mod:`recsvc.artifacts.stock_table`.
``extra.stock`` says when the stock was read (``as_of``, ISO 8601 UTC). A newer snapshot pushed with
``recsvc stock`` for the same catalog replaces it while it serves (:mod:`recsvc.server.stock`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext
from recsvc.artifacts.stock_table import StockError, StockTable

STOCK_STORE_IDS = "stock_store_ids"
STOCK_ITEM_IDS = "stock_item_ids"
STOCK_QUANTITIES = "stock_quantities"
STOCK_EXTRA = "stock"


@dataclass(frozen=True, eq=False)
class TrainingStock(Part):
    NAME = "stock"
    REQUIRED = False
    ARRAYS = (STOCK_STORE_IDS, STOCK_ITEM_IDS, STOCK_QUANTITIES)
    EXTRA_KEYS = (STOCK_EXTRA,)

    table: StockTable
    #: When the stock was read (ISO 8601 UTC); a pushed snapshot created later replaces it.
    as_of: str = ""

    def to_arrays(self) -> dict[str, np.ndarray]:
        t = self.table
        return {STOCK_STORE_IDS: t.store_ids, STOCK_ITEM_IDS: t.item_ids, STOCK_QUANTITIES: t.quantities}

    def to_extra(self) -> dict[str, Any]:
        return {STOCK_EXTRA: {"as_of": self.as_of, "rows": len(self.table), "stores": self.table.n_stores}}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> TrainingStock:
        missing = cls.missing_from(arrays)
        if missing:
            raise ArtifactError(f"training-time stock incomplete, missing {missing}")
        try:
            table = StockTable.checked(arrays[STOCK_STORE_IDS], arrays[STOCK_ITEM_IDS], arrays[STOCK_QUANTITIES],
                                       "training-time stock")
        except StockError as exc:
            raise ArtifactError(str(exc)) from exc
        meta = ctx.extra.get(STOCK_EXTRA) or {}
        return cls(table, str(meta.get("as_of", "")) if isinstance(meta, Mapping) else "")
