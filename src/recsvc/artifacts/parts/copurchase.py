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

from recsvc.artifacts.part import Part, SetContext, array, csr_rows, rows_within
from recsvc.artifacts.parts.catalog import Catalog

COPURCHASE_INDPTR = "copurchase_indptr"
COPURCHASE_ITEMS = "copurchase_items"
COPURCHASE_SCORES = "copurchase_scores"
COPURCHASE_SUPPORT = "copurchase_support"


@dataclass(frozen=True, eq=False)
class CoPurchase(Part):
    NAME = "copurchase"
    REQUIRED = True
    ARRAYS = (COPURCHASE_INDPTR, COPURCHASE_ITEMS, COPURCHASE_SCORES, COPURCHASE_SUPPORT)

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    support: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {COPURCHASE_INDPTR: self.indptr, COPURCHASE_ITEMS: self.items, COPURCHASE_SCORES: self.scores,
                COPURCHASE_SUPPORT: self.support}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> CoPurchase:
        n_items = ctx.get(Catalog).n_items
        indptr = array(arrays, COPURCHASE_INDPTR, "iu", (n_items + 1,))
        nnz = csr_rows(COPURCHASE_INDPTR, indptr)
        items = array(arrays, COPURCHASE_ITEMS, "iu", (nnz,))
        rows_within(COPURCHASE_ITEMS, items, n_items)
        return cls(indptr, items, array(arrays, COPURCHASE_SCORES, "f", (nnz,)),
                   array(arrays, COPURCHASE_SUPPORT, "iu", (nnz,)))
