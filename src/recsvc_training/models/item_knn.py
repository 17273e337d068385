"""Item-kNN neighbours for SimilarItems: cosine of the two items' buyer sets, top ``k`` per item.

Built from the purchase history (binary customer x item, net of returns as the history part holds it):
``sim(a, b) = |buyers(a) & buyers(b)| / sqrt(|buyers(a)| |buyers(b)|)``, kept when at least
``min_common`` customers bought both. The product ``X.T @ X`` is computed in blocks of items, so memory
stays at one block's row of pairs; a log whose pair count (the sum over customers of their distinct items
squared) exceeds ``max_pairs`` is not built (the caller gets None and logs why).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsvc.artifacts.parts.item_neighbours import ItemNeighbours

logger = logging.getLogger(__name__)

#: Neighbours kept per item.
KNN_NEIGHBOURS = 50
#: Work bound of one build: customer x item-pair products.
MAX_PAIRS = 300_000_000
_BLOCK = 2048


def build_item_neighbours(purchases: sp.csr_matrix, k: int = KNN_NEIGHBOURS, min_common: int = 2,
                          max_pairs: int = MAX_PAIRS) -> ItemNeighbours | None:
    """Top-``k`` cosine neighbours of every item column of a customer x item matrix (nonzero = bought)."""
    x = sp.csr_matrix(purchases, dtype=np.float32, copy=True)
    x.data[:] = 1.0
    degrees = np.diff(x.indptr).astype(np.float64)
    pairs = float((degrees ** 2).sum())
    n_items = x.shape[1]
    if pairs > max_pairs:
        logger.info("item-kNN not built: %.3g customer x item pairs over the bound %.3g", pairs, max_pairs)
        return None
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    items_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    counts = np.zeros(n_items, dtype=np.int64)
    for start in range(0, n_items, _BLOCK):
        block = (xt[start:start + _BLOCK] @ x).tocsr()  # [block, n_items] co-buyer counts
        for local in range(block.shape[0]):
            row = start + local
            lo, hi = block.indptr[local], block.indptr[local + 1]
            cols, common = block.indices[lo:hi], block.data[lo:hi]
            keep = (cols != row) & (common >= min_common)
            cols, common = cols[keep], common[keep]
            if not cols.size:
                continue
            sims = common / (norms[row] * norms[cols])
            top = np.lexsort((cols, -sims))[:k]
            items_parts.append(cols[top].astype(np.int32))
            score_parts.append(sims[top].astype(np.float32))
            counts[row] = top.size
    indptr[1:] = np.cumsum(counts)
    items = np.concatenate(items_parts) if items_parts else np.zeros(0, dtype=np.int32)
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0, dtype=np.float32)
    logger.info("item-kNN: %d items with neighbours, %d pairs", int((counts > 0).sum()), items.size)
    return ItemNeighbours(indptr, items, scores)
