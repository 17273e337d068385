"""Co-purchase: items bought in the same basket ("frequently bought together", basket completion).

A basket is the set of distinct items of the purchase events sharing a ``basket_id`` (the order, or one
customer's day). With ``B`` the basket × item 0/1 matrix, ``B.T @ B`` holds ``n_ab`` (baskets holding both
``a`` and ``b``) off the diagonal and ``n_a`` on it, computed by one sparse product: no Python loop over
baskets or pairs. The score of ``b`` for anchor ``a`` is the lower end of the Wilson score interval for
P(b in basket | a in basket) from ``n_ab`` of ``n_a`` baskets: what the baskets show with confidence, so a
pair seen twice does not outrank a well-measured one by luck (a completion is ranked by the basket item it
goes with best, and a maximum over noisy estimates favours the noisiest).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsvc.artifacts.parts.copurchase import COPURCHASE_INDPTR, COPURCHASE_ITEMS, COPURCHASE_SCORES, COPURCHASE_SUPPORT
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import EventRows, IdMaps
from recsvc_training.models.interactions import top_k_per_row

logger = logging.getLogger(__name__)


def basket_matrix(baskets: np.ndarray, items: np.ndarray, n_items: int, max_basket: int) -> sp.csr_matrix:
    """Binary basket × item CSR (int32), items deduplicated per basket, oversized baskets dropped.

    Parameters
    ----------
    baskets
        Basket number of each purchase line (``EventRows.basket``; lines with -1 are dropped). Empty rows
        (numbers without a line) are dropped too, so rows are "baskets used".
    items
        Item row of each line, aligned with ``basket_ids``.
    n_items
        Number of columns.
    max_basket
        Baskets with more distinct items than this are removed entirely (neither ``n_a`` nor ``n_ab`` count
        them); ``<= 0`` keeps every basket.
    """
    valid = baskets >= 0
    codes, n_baskets = _dense_codes(baskets[valid])
    matrix = sp.csr_matrix((np.ones(codes.size, dtype=np.int32), (codes, items[valid])),
                           shape=(n_baskets, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    if max_basket > 0:
        sizes = np.diff(matrix.indptr)
        matrix = matrix[sizes <= max_basket]
    return sp.csr_matrix(matrix)


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber ``values`` as 0..n-1 (n distinct values)."""
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), int(uniques.size)


def build_copurchase(events: EventRows, maps: IdMaps, settings: TrainingSettings) -> dict[str, np.ndarray]:
    """Co-purchase CSR over items, named as in :mod:`recsvc.artifacts`.

    Parameters
    ----------
    events
        All events; only purchases are used (returns do not undo a basket: the items were still chosen
        together), grouped by ``events.basket``.

    Returns
    -------
    dict with ``copurchase_indptr`` int64 ``[n_items + 1]`` and, per row (anchor item) sorted by score
    descending (ties: item row ascending), ``copurchase_items`` int32, ``copurchase_scores`` float32 in
    ``[0, 1)`` (:func:`wilson_lower_bound` of ``n_ab`` out of ``n_a``) and ``copurchase_support`` int32
    (``n_ab``). Only pairs with ``n_ab >= copurchase_min_support`` are kept, at most ``copurchase_top_k`` per
    anchor; an item is never its own neighbour.
    """
    purchase = events.mask(C.PURCHASE)
    baskets = basket_matrix(events.basket[purchase], events.item[purchase], maps.n_items,
                            int(settings.copurchase_max_basket))
    n_a = np.asarray(baskets.sum(axis=0)).ravel().astype(np.float64)
    pairs = (baskets.T @ baskets).tocsr()  # int32 counts; item x item, symmetric
    pairs.sort_indices()

    rows = np.repeat(np.arange(pairs.shape[0], dtype=np.int64), np.diff(pairs.indptr))
    keep = (pairs.indices != rows) & (pairs.data >= max(int(settings.copurchase_min_support), 1))
    kept_rows = rows[keep]
    support = pairs.data[keep]
    scores = wilson_lower_bound(support.astype(np.float64), n_a[kept_rows], float(settings.copurchase_confidence_z))
    counts = np.bincount(kept_rows, minlength=maps.n_items)
    indptr = np.zeros(maps.n_items + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    filtered = sp.csr_matrix((scores, pairs.indices[keep], indptr), shape=pairs.shape)

    top_indptr, positions, _ = top_k_per_row(filtered, int(settings.copurchase_top_k))
    logger.info("co-purchase: %d baskets used, %d pairs with support >= %d, %d kept (top %d per item)",
                baskets.shape[0], int(keep.sum()), settings.copurchase_min_support, positions.size,
                settings.copurchase_top_k)
    return {
        COPURCHASE_INDPTR: top_indptr,
        COPURCHASE_ITEMS: filtered.indices[positions].astype(np.int32),
        COPURCHASE_SCORES: filtered.data[positions].astype(np.float32),
        COPURCHASE_SUPPORT: support[positions].astype(np.int32),
    }


def wilson_lower_bound(successes: np.ndarray, trials: np.ndarray, z: float) -> np.ndarray:
    """Lower end of the Wilson score interval of a binomial proportion (``z``: normal quantile, 1.96 for 95 %).

    Unlike ``successes / (trials + c)`` it discounts what a few successes could show by luck: at ``z`` 1.96,
    2 of 20 gives 0.028 and 30 of 600 0.035 (``c`` 5: 0.080 and 0.050). ``trials`` must be positive; ``z`` 0
    gives the plain proportion. In ``[0, 1)`` for ``z > 0``.
    """
    p = successes / trials
    z2 = z * z
    margin = z * np.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials))
    return np.maximum((p + z2 / (2.0 * trials) - margin) / (1.0 + z2 / trials), 0.0)


def count_baskets(events: EventRows) -> int:
    """Number of distinct baskets among purchase lines (for the run's row counts)."""
    baskets = events.basket[events.mask(C.PURCHASE)]
    return int(np.unique(baskets[baskets >= 0]).size)
