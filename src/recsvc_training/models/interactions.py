"""The customer × item confidence matrix that ALS factorises, plus the sparse helpers other builders share.

Each event adds ``event_weights[event] × min(quantity, QUANTITY_CAP) × 0.5 ** (age_days / half_life)`` to
its (customer, item) cell, ``age_days`` counted back from the last day in the data. Returns cancel purchases:
the purchase part of a cell is netted (purchases minus returns, both weighted like purchases) and floored at
0 before the view and cart parts are added, so a returned item keeps the interest its views showed but none
of the purchase. The stored value is ``als_alpha * log1p(w)``: implicit takes the matrix values as the
confidence itself (an unset cell has confidence 1 and preference 0), see :mod:`recsvc_training.models.als`.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import EventRows, IdMaps

logger = logging.getLogger(__name__)

#: Quantity one event counts with at most: a wholesale line of 500 units is strong interest, not 500 times
#: the interest of one unit. Not a setting yet (see the report to the lead).
QUANTITY_CAP = 10.0


def recency_decay(day: np.ndarray, end_day: int, half_life_days: float) -> np.ndarray:
    """``0.5 ** (age / half_life)`` per event (float64), ``age = end_day - day`` in days (clipped at 0).

    A non-positive half-life switches decay off (every weight 1).
    """
    if half_life_days <= 0:
        return np.ones(np.shape(day), dtype=np.float64)
    age = np.maximum(end_day - np.asarray(day, dtype=np.float64), 0.0)
    return np.power(0.5, age / float(half_life_days))


def event_weights(events: EventRows, settings: TrainingSettings, end_day: int,
                  decay: bool = True) -> np.ndarray:
    """Signed weight of every event (float64): positive interest, negative for returns.

    Views, carts and purchases weigh ``settings.event_weights[type]`` (0 for a type missing there, and for
    unknown types); a return weighs minus the purchase weight, so it cancels the purchase it undoes. Each is
    multiplied by the capped quantity and, unless ``decay`` is False, by the recency decay to ``end_day``.
    """
    per_type = np.zeros(len(C.EVENT_TYPES) + 1, dtype=np.float64)  # the last slot serves code -1 (unknown)
    for index, name in enumerate(C.EVENT_TYPES):
        if name != C.RETURN:
            per_type[index] = float(settings.event_weights.get(name, 0.0))
    per_type[C.EVENT_TYPES.index(C.RETURN)] = -float(settings.event_weights.get(C.PURCHASE, 0.0))
    base = per_type[events.event.astype(np.int64)]  # index -1 hits the trailing zero slot
    weights = base * np.minimum(events.quantity, QUANTITY_CAP)
    if decay:
        weights *= recency_decay(events.day, end_day, settings.recency_half_life_days)
    return weights


def net_weight_matrix(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int],
                      netted: np.ndarray) -> sp.csr_matrix:
    """Sum ``weights`` per (row, col) cell into a float64 CSR, netting one part of them at 0.

    ``netted`` (bool per entry) marks the weights (purchases and returns) whose cell sum is floored at 0
    before the other weights are added. Explicit zeros are removed.
    """
    net = sp.csr_matrix((weights[netted], (rows[netted], cols[netted])), shape=shape, dtype=np.float64)
    net.sum_duplicates()
    net.data = np.maximum(net.data, 0.0)
    rest = sp.csr_matrix((weights[~netted], (rows[~netted], cols[~netted])), shape=shape, dtype=np.float64)
    total = (net + rest).tocsr()
    total.data = np.maximum(total.data, 0.0)
    total.eliminate_zeros()
    total.sort_indices()
    return total


def build_confidence(events: EventRows, maps: IdMaps, settings: TrainingSettings,
                     end_day: int) -> sp.csr_matrix:
    """The ALS input: customer × item confidence, float32 CSR of shape ``[n_customers, n_items]``.

    Rows follow ``maps.customer_ids``, columns ``maps.item_ids`` (implicit 0.7 orientation: rows are users).
    Values are ``settings.als_alpha * log1p(w)`` for cells with net weight ``w > 0``; cells whose purchases
    were all returned, and customers with no positive interaction, stay empty.
    """
    weights = event_weights(events, settings, end_day)
    netted = events.mask(C.PURCHASE, C.RETURN)
    matrix = net_weight_matrix(events.customer, events.item, weights, (maps.n_customers, maps.n_items),
                               netted)
    matrix.data = (settings.als_alpha * np.log1p(matrix.data)).astype(np.float32)
    matrix.eliminate_zeros()
    result = matrix.astype(np.float32)
    logger.info("confidence matrix: %d x %d, %d nonzeros, %d customers with interactions",
                result.shape[0], result.shape[1], result.nnz, int((np.diff(result.indptr) > 0).sum()))
    return result


def top_k_per_row(matrix: sp.csr_matrix, k: int,
                  tie_break: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` largest values of every CSR row, best first, without a Python loop over rows.

    Parameters
    ----------
    matrix
        CSR matrix; explicit zeros count as values (remove them first if they should not).
    k
        Entries kept per row at most (``k <= 0`` keeps none).
    tie_break
        Optional per-entry secondary key (aligned with ``matrix.data``), larger first; equal values and
        keys are finally ordered by column ascending, so the result is deterministic.

    Returns
    -------
    indptr : int64 ``[n_rows + 1]``
    positions : int64 ``[nnz_kept]``
        Positions into ``matrix.data`` / ``matrix.indices`` of the kept entries, row by row, best first.
    row_of : int64 ``[nnz_kept]``
        The row of each kept entry.
    """
    n_rows = matrix.shape[0]
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    keys: list[np.ndarray] = [matrix.indices]
    if tie_break is not None:
        keys.append(-np.asarray(tie_break))
    keys += [-matrix.data, rows]
    order = np.lexsort(keys)  # last key is primary: row, then value desc, tie-break desc, column asc
    rank = np.arange(order.size, dtype=np.int64) - np.repeat(matrix.indptr[:-1].astype(np.int64), counts)
    keep = rank < max(k, 0)
    positions = order[keep]
    kept_counts = np.minimum(counts, max(k, 0))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(kept_counts, out=indptr[1:])
    return indptr, positions, rows[keep]
