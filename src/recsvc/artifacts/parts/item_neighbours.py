"""Item-kNN neighbours: for each item, the items most bought by the same customers (SimilarItems).

=================  =========================  =============================================
array              dtype, shape               meaning
=================  =========================  =============================================
knn_indptr         int64, [n_items + 1]       CSR rows: neighbours of each item
knn_items          int32, [nnz]               neighbour item row, best first per row
knn_scores         float32, [nnz]             cosine of the two items' buyer sets, in (0, 1]
=================  =========================  =============================================

Present only when the trainer chose item-kNN (alone or in a blend) for SimilarItems: the choice itself is
:mod:`recsvc.artifacts.parts.similar_items`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, csr_rows, finite, rows_within
from recsvc.artifacts.parts.catalog import Catalog

KNN_INDPTR = "knn_indptr"
KNN_ITEMS = "knn_items"
KNN_SCORES = "knn_scores"


@dataclass(frozen=True, eq=False)
class ItemNeighbours(Part):
    NAME = "item_neighbours"
    REQUIRED = False
    ARRAYS = (KNN_INDPTR, KNN_ITEMS, KNN_SCORES)

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {KNN_INDPTR: self.indptr, KNN_ITEMS: self.items, KNN_SCORES: self.scores}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> ItemNeighbours:
        n_items = ctx.get(Catalog).n_items
        indptr = array(arrays, KNN_INDPTR, "iu", (n_items + 1,))
        nnz = csr_rows(KNN_INDPTR, indptr)
        items = array(arrays, KNN_ITEMS, "iu", (nnz,))
        rows_within(KNN_ITEMS, items, n_items)
        scores = array(arrays, KNN_SCORES, "f", (nnz,))
        finite(KNN_SCORES, scores)
        return cls(indptr, items, scores)
