"""The best items for one vector, by ALS score or by cosine: the trainer's ANN index when the model has one,
else an exact scan of the catalog.

One function for the three callers that rank the catalog against a vector (the ALS source, SimilarItems and
the "similar to the basket" tier of a bundle), so the choice between index and scan, and what a filter means
on each path, is written once. The two paths agree on what they return: rows best first, ties by the lower
row, with exact scores; only which rows make an index's list is approximate (its recall is in the manifest).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import top_k

#: ``(item rows) -> bool mask``: which of these rows may be returned.
RowFilter = Callable[[np.ndarray], np.ndarray]


def nearest_items(model: LoadedModel, vector: np.ndarray, k: int, *, cosine: bool = False,
                  allowed: RowFilter | None = None, overfetch: int = 0, positive: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` item rows with the highest score against ``vector``, best first, and their scores.

    Parameters
    ----------
    model
        The loaded model; its ``ann`` (inner product) or ``ann_cosine`` index is used when present.
    vector
        A customer vector (ALS score ``vector . item factors``) or, with ``cosine``, a unit-length item-space
        vector (score = cosine to each item's unit factors; 0 for items without factors).
    k
        How many rows to return at most.
    allowed
        Which rows may be returned (None: all). On the scan path it is asked once for the whole catalog; on
        the index path for the index's candidates only, so the index is asked for ``k + overfetch`` rows to
        make up for the ones the filter drops (a filter that drops more may leave the list short).
    overfetch
        Extra index candidates to fetch for ``allowed`` and ``positive`` to drop; unused by the scan.
    positive
        Keep only rows scoring above 0 (e.g. only items positively similar).

    Returns
    -------
    rows, scores
        int64 item rows and float32 scores, aligned, at most ``k`` of each.
    """
    index = model.ann_cosine if cosine else model.ann
    if index is not None:  # large catalog: the trainer's index, candidates re-scored exactly
        rows, scores = index.search(vector, k + overfetch)
        if allowed is None and not positive:
            return rows, scores
        keep = allowed(rows) if allowed is not None else np.ones(rows.size, dtype=bool)
        if positive:
            keep &= scores > 0
        at = np.flatnonzero(keep)[:k]
        return rows[at], scores[at]
    scores = model.cosine_to(vector) if cosine else np.asarray(vector, dtype=np.float32) @ model.item_factors_t
    if allowed is not None:
        scores = np.where(allowed(np.arange(model.n_items, dtype=np.int64)), scores, -np.inf)
    best = top_k(scores, k)
    if positive:
        best = best[scores[best] > 0]
    return best, scores[best]
