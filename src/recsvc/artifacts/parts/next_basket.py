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

from recsvc.artifacts.csr_part import ItemRowsCsr
from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import SetContext

NEXT_BASKET_INDPTR = "next_basket_indptr"
NEXT_BASKET_ITEMS = "next_basket_items"
NEXT_BASKET_SCORES = "next_basket_scores"
NEXT_BASKET_EXTRA = "next_basket"


@dataclass(frozen=True, eq=False)
class NextBasket(ItemRowsCsr):
    """TIFU-KNN lists, a row per customer (:class:`~recsvc.artifacts.csr_part.ItemRowsCsr`; :meth:`row` gives a
    customer's items and scores), and the hyperparameters behind them."""

    NAME = "next_basket"
    REQUIRED = False
    ARRAYS = (NEXT_BASKET_INDPTR, NEXT_BASKET_ITEMS, NEXT_BASKET_SCORES)
    INDPTR, ITEMS, SCORES = NEXT_BASKET_INDPTR, NEXT_BASKET_ITEMS, NEXT_BASKET_SCORES
    ROWS = "customers"
    EXTRA_KEYS = (NEXT_BASKET_EXTRA,)

    params: Mapping[str, Any] = field(default_factory=dict)

    def to_extra(self) -> dict[str, Any]:
        return {NEXT_BASKET_EXTRA: dict(self.params)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> NextBasket:
        indptr, items, scores = cls.read_csr(arrays, ctx)
        if scores.size and scores.min() <= 0:
            raise ArtifactError(f"{NEXT_BASKET_SCORES} must be positive")
        params = ctx.extra.get(NEXT_BASKET_EXTRA, {})
        return cls(indptr, items, scores, dict(params) if isinstance(params, Mapping) else {})
