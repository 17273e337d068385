"""Items bought together: for each item, its basket neighbours, best first.

==================  =========================  =============================================
array               dtype, shape               meaning
==================  =========================  =============================================
copurchase_indptr   int64, [n_items + 1]       CSR rows: items bought with each item
copurchase_items    int32, [nnz]               neighbour item row, best first per row
copurchase_scores   float32, [nnz]             estimate of P(b | a) in [0, 1): the Wilson
                                               lower bound (``copurchase_confidence_z``);
                                               older sets hold n_ab / (n_a + 5), which the
                                               server reads alike (same dtype and range)
copurchase_support  int32, [nnz]               number of baskets holding both
==================  =========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.csr_part import ItemRowsCsr
from recsvc.artifacts.part import SetContext, array

COPURCHASE_INDPTR = "copurchase_indptr"
COPURCHASE_ITEMS = "copurchase_items"
COPURCHASE_SCORES = "copurchase_scores"
COPURCHASE_SUPPORT = "copurchase_support"


@dataclass(frozen=True, eq=False)
class CoPurchase(ItemRowsCsr):
    """Co-purchase neighbours, a row per catalog item (:class:`~recsvc.artifacts.csr_part.ItemRowsCsr`), plus
    each pair's basket count."""

    NAME = "copurchase"
    REQUIRED = True
    ARRAYS = (COPURCHASE_INDPTR, COPURCHASE_ITEMS, COPURCHASE_SCORES, COPURCHASE_SUPPORT)
    INDPTR, ITEMS, SCORES = COPURCHASE_INDPTR, COPURCHASE_ITEMS, COPURCHASE_SCORES
    ROWS = "items"
    FINITE_SCORES = False  # never checked so far: a set that loaded before must load now

    support: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), COPURCHASE_SUPPORT: self.support}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> CoPurchase:
        indptr, items, scores = cls.read_csr(arrays, ctx)
        return cls(indptr, items, scores, array(arrays, COPURCHASE_SUPPORT, "iu", (items.size,)))
