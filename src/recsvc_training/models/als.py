"""Collaborative filtering: implicit-feedback ALS factors for customers and items.

``fit_als`` is a plain function from the confidence matrix (:func:`recsvc_training.models.interactions.
build_confidence`) to two float32 factor arrays, so it can be timed, tested and swapped on its own. A
customer's score for an item is ``user_factors[c] @ item_factors[i]``.

implicit's confidence convention: a matrix value ``v`` on a cell is its confidence ``c = v`` (with
preference 1); every unset cell has confidence 1 and preference 0. implicit's own ``alpha`` multiplier is
left at 1.0 because our matrix already carries ``als_alpha``.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsvc.config import TrainingSettings

logger = logging.getLogger(__name__)


def fit_als(matrix: sp.csr_matrix, settings: TrainingSettings,
            show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit ALS on a customer × item confidence matrix.

    Parameters
    ----------
    matrix
        CSR ``[n_customers, n_items]`` of confidences (rows are users, implicit 0.7 orientation).
    settings
        Uses ``als_factors``, ``als_regularization``, ``als_iterations`` and ``als_random_state``.
    show_progress
        Let implicit draw its per-iteration progress bar (only sensible on a terminal).

    Returns
    -------
    user_factors : float32 ``[n_customers, als_factors]``
    item_factors : float32 ``[n_items, als_factors]``
        Rows of customers (items) without any interaction are exactly zero, so they score 0 for everything
        instead of carrying the random initialisation.
    """
    from implicit.als import AlternatingLeastSquares  # heavy import, only where a model is fitted

    n_customers, n_items = matrix.shape
    factors = int(settings.als_factors)
    user_factors = np.zeros((n_customers, factors), dtype=np.float32)
    item_factors = np.zeros((n_items, factors), dtype=np.float32)
    if matrix.nnz == 0:
        logger.warning("ALS skipped: the confidence matrix is empty; every factor is zero")
        return user_factors, item_factors

    user_items = sp.csr_matrix(matrix, dtype=np.float32)
    # implicit parallelises over users itself; a multi-threaded BLAS underneath oversubscribes the cores
    # (implicit warns about it, at construction). Limit BLAS for construction and fit, restore after.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=float(settings.als_regularization),
            alpha=1.0,
            iterations=int(settings.als_iterations),
            random_state=int(settings.als_random_state),
            use_gpu=False,
        )
        model.fit(user_items, show_progress=show_progress)

    user_factors[:] = np.asarray(model.user_factors, dtype=np.float32)
    item_factors[:] = np.asarray(model.item_factors, dtype=np.float32)
    user_factors[np.diff(user_items.indptr) == 0] = 0.0
    item_factors[np.bincount(user_items.indices, minlength=n_items) == 0] = 0.0
    if not (np.all(np.isfinite(user_factors)) and np.all(np.isfinite(item_factors))):
        raise FloatingPointError("ALS produced NaN or infinite factors; lower als_alpha or raise "
                                 "als_regularization")
    return user_factors, item_factors
