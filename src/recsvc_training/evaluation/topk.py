"""Batch top-k selection on score matrices, shared by the baselines and the basket completers.

All three functions work on whole batches of rows with numpy; none loops over items. Results are int64 item
rows ``[n_rows, k]``, best first, padded with -1.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_k_sparse(scores: sp.csr_matrix, k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` highest-scoring stored entries of each row of a CSR matrix.

    Only entries with a positive score are candidates (an item a row never touched is not "ranked"), so a row
    with fewer than ``k`` of them is padded with -1. Ties go to the higher ``tiebreak`` value (one per column,
    e.g. popularity), then to the lower column.
    """
    mat = sp.csr_matrix(scores, copy=True)
    mat.sum_duplicates()
    mat.data[mat.data <= 0] = 0
    mat.eliminate_zeros()
    n = mat.shape[0]
    out = np.full((n, k), -1, dtype=np.int64)
    if mat.nnz == 0 or k <= 0:
        return out
    row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(mat.indptr))
    cols = mat.indices.astype(np.int64)
    second = np.zeros(len(cols)) if tiebreak is None else -np.asarray(tiebreak, dtype=np.float64)[cols]
    order = np.lexsort((cols, second, -mat.data.astype(np.float64), row_of))
    # Sorted by row first, so entry j of the order is at position j - indptr[row] within its row.
    pos = np.arange(len(order), dtype=np.int64) - mat.indptr[row_of[order]]
    sel = pos < k
    out[row_of[order][sel], pos[sel]] = cols[order][sel]
    return out


def top_k_dense(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest finite, positive scores of each row of a dense ``[n, n_items]`` array; -1 padding.

    Set a score to 0 or -inf to make an item ineligible. Ties go to the lower column.
    """
    n, n_items = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or n_items == 0 or k <= 0:
        return out
    width = min(k, n_items)
    part = (np.argpartition(-scores, width - 1, axis=1)[:, :width] if width < n_items
            else np.broadcast_to(np.arange(n_items), (n, n_items)).copy())
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    out[:, :width] = np.where(np.isfinite(best_scores) & (best_scores > 0), best, -1)
    return out


def row_item_keys(ids: np.ndarray, valid: np.ndarray, n_items: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an int array ``ids`` ``[n, m]`` and its ``valid`` mask: each entry's row (``[n, m]``), one
    ``row * n_items + id`` key per valid entry (row-major order), and which of those keys is the first of its
    (row, id) pair — later repeats within a row are not new items."""
    rows = np.broadcast_to(np.arange(ids.shape[0], dtype=np.int64)[:, None], ids.shape)
    keys = rows[valid] * n_items + ids[valid]
    _, first = np.unique(keys, return_index=True)
    first_only = np.zeros(len(keys), dtype=bool)
    first_only[first] = True
    return rows, keys, first_only


def csr_contains(matrix: sp.csr_matrix, keys: np.ndarray) -> np.ndarray:
    """Whether each ``row * n_cols + col`` key is stored in ``matrix``, which must hold sorted indices and no
    duplicates (then its keys come out sorted, and one searchsorted answers all)."""
    n, n_cols = matrix.shape
    if matrix.nnz == 0:
        return np.zeros(len(keys), dtype=bool)
    stored = np.repeat(np.arange(n, dtype=np.int64), np.diff(matrix.indptr)) * n_cols + matrix.indices
    pos = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
    return np.asarray(stored[pos] == keys)


def fill_unique(candidates: np.ndarray, k: int, n_items: int,
                exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """The first ``k`` distinct valid entries of each row of ``candidates``, in order; -1 padding.

    ``candidates`` is an int array ``[n, m]`` (usually a model's own list followed by a fallback list, e.g.
    popularity, so the fallback fills the slots the model leaves empty). Entries that are -1, repeat an
    earlier entry of the row, or are stored in row ``i`` of ``exclude`` (CSR ``[n, n_items]``) are skipped.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    n = cand.shape[0]
    out = np.full((n, k), -1, dtype=np.int64)
    valid = (cand >= 0) & (cand < n_items)
    if n == 0 or not valid.any():
        return out
    rows, keys, keep_valid = row_item_keys(cand, valid, n_items)
    if exclude is not None and exclude.nnz:
        ex = sp.csr_matrix(exclude, copy=True)
        ex.sum_duplicates()
        ex.sort_indices()
        keep_valid &= ~csr_contains(ex, keys)
    keep = np.zeros(cand.shape, dtype=bool)
    keep[valid] = keep_valid
    rank = np.cumsum(keep, axis=1) - 1
    sel = keep & (rank < k)
    out[rows[sel], rank[sel]] = cand[sel]
    return out
