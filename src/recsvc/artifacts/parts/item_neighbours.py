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

from dataclasses import dataclass

from recsvc.artifacts.csr_part import ItemRowsCsr

KNN_INDPTR = "knn_indptr"
KNN_ITEMS = "knn_items"
KNN_SCORES = "knn_scores"


@dataclass(frozen=True, eq=False)
class ItemNeighbours(ItemRowsCsr):
    """Item-kNN neighbours, a row per catalog item (:class:`~recsvc.artifacts.csr_part.ItemRowsCsr`)."""

    NAME = "item_neighbours"
    REQUIRED = False
    ARRAYS = (KNN_INDPTR, KNN_ITEMS, KNN_SCORES)
    INDPTR, ITEMS, SCORES = KNN_INDPTR, KNN_ITEMS, KNN_SCORES
    ROWS = "items"
