"""Top-k ranking metrics on integer rows, vectorised over customers.

One representation everywhere: recommendations are a 2-D int array ``[n_customers, width]`` of item rows,
best first, padded with -1 where a model has fewer items to offer; truth is a CSR matrix
``[n_customers, n_items]`` whose non-zeros are the relevant items (binary relevance, values ignored),
row ``i`` belonging to the same customer as ``recommended[i]``.

Customers whose truth row is empty are excluded from every average (they have nothing to find); a metric over
no customers is NaN. Only the first ``k`` columns count; a list shorter than ``k`` (fewer columns, or -1
padding) is scored as if the missing slots were misses. A repeated item in one list counts once, at its first
position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsvc_training.evaluation.topk import csr_contains, row_item_keys

logger = logging.getLogger(__name__)


def hit_matrix(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Bool ``[n, k]``: whether the item at each of the first ``k`` positions is relevant.

    Padding (-1), repeats of an item already listed earlier in the row and columns beyond the array's width
    are ``False``.
    """
    recs = _top_k(recommended, k)
    return _hits(recs, _check(recs, truth))


def recall_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean over customers of hits in the top ``k`` / number of relevant items.

    Not capped at ``k``: a customer with 20 relevant items can reach at most k/20.
    """
    return ranking_metrics(recommended, truth, k)[f"recall@{k}"]


def precision_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean over customers of hits in the top ``k`` / ``k`` (padding counts as a miss)."""
    return ranking_metrics(recommended, truth, k)[f"precision@{k}"]


def hit_rate_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Share of customers with at least one relevant item in the top ``k``."""
    return ranking_metrics(recommended, truth, k)[f"hit_rate@{k}"]


def ndcg_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean binary-relevance NDCG: sum of 1/log2(pos+2) over hits, over the ideal for min(|truth|, k) hits."""
    return ranking_metrics(recommended, truth, k)[f"ndcg@{k}"]


def map_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean average precision: sum of precision@i at each hit position i, over min(|truth|, k)."""
    return ranking_metrics(recommended, truth, k)[f"map@{k}"]


def mrr_at_k(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean reciprocal rank of the first hit in the top ``k`` (0 when there is none)."""
    recs = _top_k(recommended, k)
    truth = _check(recs, truth)
    hits = _hits(recs, truth)
    rr = np.where(hits.any(axis=1), 1.0 / (np.argmax(hits, axis=1) + 1.0), 0.0)
    return _mean(rr, np.diff(truth.indptr) > 0)


def ranking_metrics(recommended: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, float]:
    """recall, ndcg, precision, hit_rate and map at ``k`` from one hit matrix (keys ``"<metric>@<k>"``)."""
    recs = _top_k(recommended, k)
    truth = _check(recs, truth)
    hits = _hits(recs, truth).astype(np.float64)
    n_rel = np.diff(truth.indptr).astype(np.int64)
    keep = n_rel > 0
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)
    # IDCG: all of the first min(|truth|, k) positions hit.
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_rel, k)]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    cap = np.maximum(np.minimum(n_rel, k), 1)
    return {
        f"recall@{k}": _mean(n_hits / np.maximum(n_rel, 1), keep),
        f"ndcg@{k}": _mean((hits @ discounts) / np.where(ideal > 0, ideal, 1.0), keep),
        f"precision@{k}": _mean(n_hits / k, keep),
        f"hit_rate@{k}": _mean((n_hits > 0).astype(np.float64), keep),
        f"map@{k}": _mean((precision_at_i * hits).sum(axis=1) / cap, keep),
    }


def coverage(recommended: np.ndarray, catalog_size: int, k: int | None = None) -> float:
    """Distinct items recommended (first ``k`` columns, padding ignored) / ``catalog_size``."""
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be positive, got {catalog_size}")
    recs = recommended if k is None else _top_k(recommended, k)
    return float(len(np.unique(recs[recs >= 0]))) / catalog_size


@dataclass(frozen=True)
class RepeatNewSplit:
    """Hits split by whether the customer had bought the item before the cut-off.

    Counts are summed over customers (micro): ``repeat_recall`` = repeat hits / relevant items the customer
    had bought before, ``new_recall`` the same for items new to the customer; NaN when there are none.
    """

    repeat_hits: int
    new_hits: int
    repeat_truth: int
    new_truth: int

    @property
    def repeat_hit_share(self) -> float:
        total = self.repeat_hits + self.new_hits
        return self.repeat_hits / total if total else float("nan")

    @property
    def repeat_recall(self) -> float:
        return self.repeat_hits / self.repeat_truth if self.repeat_truth else float("nan")

    @property
    def new_recall(self) -> float:
        return self.new_hits / self.new_truth if self.new_truth else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {"repeat_hits": self.repeat_hits, "new_hits": self.new_hits, "repeat_truth": self.repeat_truth,
                "new_truth": self.new_truth, "repeat_hit_share": self.repeat_hit_share,
                "repeat_recall": self.repeat_recall, "new_recall": self.new_recall}


def repeat_new_split(recommended: np.ndarray, truth: sp.csr_matrix, history: sp.csr_matrix,
                     k: int) -> RepeatNewSplit:
    """Split the top-``k`` hits into items in ``history`` (bought before the cut-off) and new items.

    ``history`` is a CSR matrix with the same shape and row order as ``truth``.
    """
    recs = _top_k(recommended, k)
    truth = _check(recs, truth)
    history = _check(recs, history)
    if history.shape != truth.shape:
        raise ValueError(f"history shape {history.shape} differs from truth shape {truth.shape}")
    hits = _hits(recs, truth)
    was_bought = _hits(recs, history)  # the listed item is one the customer bought before
    repeat_truth = int(truth.multiply(history).nnz)
    return RepeatNewSplit(repeat_hits=int((hits & was_bought).sum()),
                          new_hits=int((hits & ~was_bought).sum()),
                          repeat_truth=repeat_truth, new_truth=int(truth.nnz) - repeat_truth)


def truth_from_lists(item_rows: list[np.ndarray] | list[list[int]], n_items: int) -> sp.csr_matrix:
    """CSR truth from one list of relevant item rows per customer (duplicates collapse)."""
    lengths = np.fromiter((len(r) for r in item_rows), dtype=np.int64, count=len(item_rows))
    cols = (np.concatenate([np.asarray(r, dtype=np.int64) for r in item_rows]) if len(item_rows)
            else np.zeros(0, dtype=np.int64))
    rows = np.repeat(np.arange(len(item_rows)), lengths)
    mat = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(item_rows), n_items))
    mat.data[:] = 1.0
    mat.sort_indices()
    return mat


def _top_k(recommended: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` columns as int64, padded with -1 when the array is narrower."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    recs = np.asarray(recommended)
    if recs.ndim != 2:
        raise ValueError(f"recommendations must be 2-D [n_customers, k], got shape {recs.shape}")
    recs = recs[:, :k].astype(np.int64, copy=False)
    if recs.shape[1] < k:
        recs = np.hstack([recs, np.full((recs.shape[0], k - recs.shape[1]), -1, dtype=np.int64)])
    return recs


def _check(recs: np.ndarray, truth: sp.csr_matrix) -> sp.csr_matrix:
    """A canonical copy of ``truth``: no duplicates, no stored zeros, sorted indices."""
    truth = sp.csr_matrix(truth, copy=True)
    if truth.shape[0] != recs.shape[0]:
        raise ValueError(f"{recs.shape[0]} recommendation rows but {truth.shape[0]} truth rows")
    truth.sum_duplicates()
    truth.eliminate_zeros()
    truth.sort_indices()
    return truth


def _hits(recs: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    n_items = truth.shape[1]
    hits = np.zeros(recs.shape, dtype=bool)
    valid = (recs >= 0) & (recs < n_items)
    if not valid.any() or truth.nnz == 0:
        return hits
    # Later repeats of an item in the same list are not hits; truth holds sorted indices (truth_from_lists).
    _, keys, first_only = row_item_keys(recs, valid, n_items)
    hits[valid] = csr_contains(truth, keys) & first_only
    return hits


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].mean()) if keep.any() else float("nan")
