"""SimilarItems: the items to show beside one item, by the method the trainer chose on a validation window.

Methods (``extra.similar_items.method``, :mod:`recsvc.artifacts.parts.similar_items`):

- ``als``: cosine of ALS item factors (the only method before issue 14; on a small log it related crispbread
  to a garden hose);
- ``copurchase``: the item's co-purchase neighbours (:mod:`recsvc.artifacts.parts.copurchase`), best first;
- ``item_knn``: cosine of the two items' buyer sets (:mod:`recsvc.artifacts.parts.item_neighbours`);
- ``blend``: reciprocal-rank fusion of those three lists.

Whatever the method, a list the filter leaves short is continued by ALS cosine, and every item carries the
reason of the list it came from (:func:`recsvc.ranking.reasons.similar_reason`). The trainer's measurement
(:mod:`recsvc_training.evaluation.similar_items`) calls :func:`similar_rows`, so it scores what is served.
"""

from __future__ import annotations

import numpy as np

from recsvc.artifacts.parts.item_neighbours import ItemNeighbours
from recsvc.artifacts.parts.similar_items import DEFAULT_METHOD, SimilarItemsChoice
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.scoring import RowFilter, nearest_items
from recsvc.ranking.sources import group_by_key

#: Neighbours read from each list (the stored co-purchase rows hold up to 50).
_DEPTH = 50
_RANK_OFFSET = 60.0
#: The lists of the blend, in fusion order (and their weights).
_BLEND = (("copurchase", 1.0), ("item_knn", 1.0), ("als", 1.0))


def served_method(model: LoadedModel) -> str:
    """The method this model answers SimilarItems with."""
    part = model.parts.get(SimilarItemsChoice)
    return part.method if part is not None else DEFAULT_METHOD


def _csr_row(indptr: np.ndarray, items: np.ndarray, scores: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = int(indptr[row]), int(indptr[row + 1])
    hi = min(hi, lo + _DEPTH)
    return items[lo:hi].astype(np.int64), scores[lo:hi].astype(np.float32)


def _als(model: LoadedModel, row: int, n: int, allowed: RowFilter | None) -> tuple[np.ndarray, np.ndarray]:
    query = model.normed_vectors(np.array([row]))[0]
    if not np.any(query):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return nearest_items(model, query, n, cosine=True, allowed=allowed, positive=True, overfetch=33)


def _list(model: LoadedModel, method: str, row: int, n: int, knn: ItemNeighbours | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """One method's raw list for ``row`` (unfiltered, the item itself excluded)."""
    if method == "copurchase":
        items, scores = _csr_row(model.copurchase_indptr, model.copurchase_items, model.copurchase_scores, row)
    elif method == "item_knn":
        part = knn if knn is not None else model.parts.get(ItemNeighbours)
        if part is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        items, scores = _csr_row(part.indptr, part.items, part.scores, row)
    else:
        items, scores = _als(model, row, max(n, _DEPTH) + 1, None)
    keep = items != row
    return items[keep], scores[keep]


def similar_rows(model: LoadedModel, row: int, n: int, allowed: RowFilter | None = None,
                 method: str | None = None, knn: ItemNeighbours | None = None
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Up to ``n`` item rows similar to ``row`` by ``method`` (default: the model's), best first, with scores
    and the method each came from; ``allowed`` filters rows (the item itself never appears). ``knn``
    replaces the model's item-neighbours part (the trainer measures a candidate the set does not hold)."""
    method = method or served_method(model)
    if method == "blend":
        lists = [(name, _list(model, name, row, n, knn)[0], weight) for name, weight in _BLEND]
        lists = [(name, items, w) for name, items, w in lists if items.size]
        if lists:
            items = np.concatenate([items for _, items, _ in lists])
            contrib = np.concatenate([w / (_RANK_OFFSET + np.arange(1, items.size + 1)) for _, items, w in lists])
            owner = np.concatenate([np.full(items.size, i) for i, (_, items, _) in enumerate(lists)])
            grouped = group_by_key(items, contrib)
            order = np.lexsort((grouped.keys, -grouped.sums))
            rows, scores = grouped.keys[order], grouped.sums[order].astype(np.float32)
            methods = [lists[int(i)][0] for i in owner[grouped.best[order]]]
        else:
            rows, scores, methods = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), []
    elif method == "als":
        rows, scores = _als(model, row, n + 1, None if allowed is None else
                            (lambda r: allowed(r) & (r != row)))
        keep = rows != row
        return rows[keep][:n], scores[keep][:n], ["als"] * int(min(n, keep.sum()))
    else:
        rows, scores = _list(model, method, row, n, knn)
        methods = [method] * rows.size
    keep = np.ones(rows.size, dtype=bool) if allowed is None else allowed(rows)
    at = np.flatnonzero(keep)[:n]
    rows, scores, methods = rows[at], scores[at], [methods[i] for i in at.tolist()]
    if rows.size < n:  # continue with ALS cosine, below the list's own scores
        taken = np.concatenate([rows, [row]])

        def also(r: np.ndarray) -> np.ndarray:
            mask = ~np.isin(r, taken)
            return mask & allowed(r) if allowed is not None else mask

        more, more_scores = _als(model, row, n - rows.size, also)
        floor = float(scores[-1]) if scores.size else 1.0
        more_scores = np.minimum(more_scores, floor * 0.99 ** np.arange(1, more.size + 1)).astype(np.float32)
        rows, scores = np.concatenate([rows, more]), np.concatenate([scores, more_scores])
        methods += ["als"] * more.size
    return rows, scores, methods
