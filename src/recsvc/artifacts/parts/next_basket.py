"""TIFU-KNN next-basket lists: each customer's top items by TIFU-KNN score, computed by the trainer.

TIFU-KNN (Hu et al., SIGIR 2020; :mod:`recsvc_training.models.next_basket`) blends a customer's own
time-decayed item frequencies with those of the nearest customers. Its neighbour search costs a pass over all
customers, so the trainer does it once a night and stores the result; the server only reads a row (the
``tifu_knn`` candidate source, a ranker feature, and the ``tifu_knn`` policy when model selection chose it).

===================  =========================  ===================================================
array                dtype, shape               meaning
===================  =========================  ===================================================
next_basket_indptr   int64, [n_customers + 1]   CSR row pointer over customers
next_basket_items    int32, [n_entries]         item rows, best first within a customer's row
next_basket_scores   float32, [n_entries]       TIFU-KNN score (> 0, never increasing along a row)
===================  =========================  ===================================================

``extra["next_basket"]`` holds the hyperparameters used and how they were chosen (JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array, csr_rows, finite, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

NEXT_BASKET_INDPTR = "next_basket_indptr"
NEXT_BASKET_ITEMS = "next_basket_items"
NEXT_BASKET_SCORES = "next_basket_scores"
NEXT_BASKET_EXTRA = "next_basket"


@dataclass(frozen=True, eq=False)
class NextBasket(Part):
    NAME = "next_basket"
    REQUIRED = False
    ARRAYS = (NEXT_BASKET_INDPTR, NEXT_BASKET_ITEMS, NEXT_BASKET_SCORES)
    EXTRA_KEYS = (NEXT_BASKET_EXTRA,)

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    params: Mapping[str, Any] = field(default_factory=dict)

    def row(self, customer_row: int) -> tuple[np.ndarray, np.ndarray]:
        """The customer's items and scores, best first (empty for ``-1``); views, no copies."""
        if customer_row < 0:
            return self.items[:0], self.scores[:0]
        lo, hi = int(self.indptr[customer_row]), int(self.indptr[customer_row + 1])
        return self.items[lo:hi], self.scores[lo:hi]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {NEXT_BASKET_INDPTR: self.indptr, NEXT_BASKET_ITEMS: self.items, NEXT_BASKET_SCORES: self.scores}

    def to_extra(self) -> dict[str, Any]:
        return {NEXT_BASKET_EXTRA: dict(self.params)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> NextBasket:
        n_customers = ctx.get(Customers).n_customers
        indptr = array(arrays, NEXT_BASKET_INDPTR, "iu", (n_customers + 1,))
        n = csr_rows(NEXT_BASKET_INDPTR, indptr)
        items = array(arrays, NEXT_BASKET_ITEMS, "iu", (n,))
        scores = array(arrays, NEXT_BASKET_SCORES, "f", (n,))
        rows_within(NEXT_BASKET_ITEMS, items, ctx.get(Catalog).n_items)
        finite(NEXT_BASKET_SCORES, scores)
        if n and scores.min() <= 0:
            raise ArtifactError(f"{NEXT_BASKET_SCORES} must be positive")
        params = ctx.extra.get(NEXT_BASKET_EXTRA, {})
        return cls(indptr, items, scores, dict(params) if isinstance(params, Mapping) else {})
