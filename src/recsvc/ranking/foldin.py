"""Fold what a customer does right now into their ALS vector, at request time, without retraining.

implicit's ALS solves, per customer, the least-squares normal equations ``A u = b`` with
``A = YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ`` and ``b = Σ_i c_i y_i`` over the items the customer interacted with
(confidence ``c_i``, item factors ``y_i``; an untouched item has confidence 1 and preference 0, hence ``YᵀY``).
Items the customer looks at or has in the cart (``context_item_ids``) are new observations: each adds its
confidence to ``A`` and ``b`` and one ``f x f`` solve gives the new vector.

The artifact set holds the customer's purchases but not the views and carts that also went into training, so
the system is rebuilt from the purchase history (confidence ``alpha * log1p(purchase_weight * count * decay)``,
as the trainer weighs a purchase) and **anchored on the trained vector**: ``b = A u_trained``. Without context
the result is therefore exactly the trained vector, and context moves it the way one more interaction would.
A customer without a trained vector (no interactions) gets the plain fold-in ``A⁻¹ Σ c_i y_i``.

``YᵀY`` is computed once per loaded model (:meth:`FoldIn.for_model`); a request then costs
``O((history + context) x f²)`` plus one ``f x f`` solve (64 factors: well under a millisecond).
"""

from __future__ import annotations

import threading
import weakref
from typing import ClassVar

import numpy as np

from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import RankingContext


def confidence(params: FoldInParams, weight: np.ndarray) -> np.ndarray:
    """The ALS confidence of a cell with summed interaction weight ``weight`` (the trainer's formula)."""
    return params.alpha * np.log1p(np.maximum(np.asarray(weight, dtype=np.float64), 0.0))


def fold_in(item_factors: np.ndarray, gramian: np.ndarray, regularization: float, history_items: np.ndarray,
            history_confidence: np.ndarray, context_items: np.ndarray, context_confidence: np.ndarray,
            user: np.ndarray | None = None) -> np.ndarray:
    """Solve the customer's ALS normal equations with the context items added as observations.

    Parameters
    ----------
    item_factors
        ``[n_items, f]`` (or any array whose rows are item factors; only the given rows are read).
    gramian
        ``YᵀY`` of all item factors, ``[f, f]`` float64.
    regularization
        ALS ``λ``.
    history_items, history_confidence
        Item rows the customer interacted with and their confidences (unique rows).
    context_items, context_confidence
        Item rows seen now and their confidence *after* the new events (for an item also in the history,
        its combined confidence).
    user
        The trained vector ``[f]``; when given and non-zero the system is anchored on it (``b = A u``).

    Returns
    -------
    float32 ``[f]``, the folded-in customer vector.
    """
    f = gramian.shape[0]
    hist = np.asarray(history_items, dtype=np.int64)
    c_hist = np.asarray(history_confidence, dtype=np.float64)
    y_hist = np.asarray(item_factors[hist], dtype=np.float64).reshape(-1, f)
    a = gramian + regularization * np.eye(f) + y_hist.T @ ((c_hist - 1.0)[:, None] * y_hist)
    anchored = user is not None and bool(np.any(user))
    b = a @ np.asarray(user, dtype=np.float64) if anchored else y_hist.T @ c_hist
    ctx = np.asarray(context_items, dtype=np.int64)
    if ctx.size:
        match = np.flatnonzero(hist[None, :] == ctx[:, None]) if hist.size else np.zeros(0, dtype=np.int64)
        old_a = np.ones(ctx.size)   # an untouched item sits in YᵀY with confidence 1 ...
        old_b = np.zeros(ctx.size)  # ... and preference 0
        rows, cols = np.divmod(match, max(hist.size, 1))
        old_a[rows] = old_b[rows] = c_hist[cols]
        c_new = np.asarray(context_confidence, dtype=np.float64)
        y_ctx = np.asarray(item_factors[ctx], dtype=np.float64).reshape(-1, f)
        a += y_ctx.T @ ((c_new - old_a)[:, None] * y_ctx)
        b += y_ctx.T @ (c_new - old_b)
    return np.linalg.solve(a, b).astype(np.float32)


class FoldIn:
    """Per-model fold-in: ``YᵀY`` computed once, then :meth:`user_vector` per request (thread-safe, read-only)."""

    _cache: ClassVar[weakref.WeakKeyDictionary[LoadedModel, FoldIn]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.params = model.parts.get(FoldInParams) or FoldInParams.DEFAULT
        factors = np.asarray(model.item_factors, dtype=np.float64)
        self.gramian = factors.T @ factors

    @classmethod
    def for_model(cls, model: LoadedModel) -> FoldIn:
        """The model's fold-in, built on first use and kept as long as the model lives."""
        with cls._lock:
            found = cls._cache.get(model)
            if found is None:
                found = cls._cache[model] = cls(model)
            return found

    def user_vector(self, ctx: RankingContext) -> np.ndarray:
        """The customer's vector with ``ctx.context_items`` folded in (float32 ``[f]``).

        History confidences come from the purchase history, decayed to the model's last data day; each
        context item weighs one cart add on top of whatever the customer bought of it.
        """
        m, p, hist = self.model, self.params, ctx.history
        items = hist.items.astype(np.int64)
        age = np.maximum(m.data_end_day - hist.last_day.astype(np.float64), 0.0)
        decay = np.power(0.5, age / p.half_life_days) if p.half_life_days > 0 else np.ones(items.size)
        weight = p.purchase_weight * hist.count.astype(np.float64) * decay
        context = np.asarray(ctx.context_items, dtype=np.int64)
        at = hist.positions_of(context)
        context_weight = p.context_weight + np.where(at >= 0, weight[np.maximum(at, 0)] if weight.size else 0.0, 0.0)
        user = m.user_factors[ctx.customer_row] if ctx.customer_row >= 0 else None
        return fold_in(m.item_factors, self.gramian, p.regularization, items, confidence(p, weight),
                       context, confidence(p, context_weight), user)
