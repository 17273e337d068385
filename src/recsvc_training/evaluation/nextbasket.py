"""TIFU-KNN (Hu et al., SIGIR 2020), a next-basket baseline from the literature, tuned on a validation window.

Written from the paper's definitions ("Modeling Personalized Item Frequency Information for Next-basket
Recommendation"). A customer's purchase baskets, oldest first, each a 0/1 vector over items, are cut into
groups of ``group_size`` (m) baskets counted from the most recent one, so the oldest group may hold fewer. A
group's vector is the mean of its baskets weighted by ``within_decay ** j`` (r_b; j = 0 for the group's newest
basket); the customer's vector is the mean of the group vectors weighted by ``across_decay ** g`` (r_g; g = 0
for the newest group). The prediction is ``alpha * own vector + (1 - alpha) * mean of the ``neighbours``
nearest customers' vectors``, nearest by Euclidean distance between the vectors (the paper's choice; cosine is
offered for the validation to pick). Items are ranked by that score, then filled with popularity.

The hyperparameters are chosen by :func:`tune_tifu_knn` on a validation window cut from the train side (the
last ``validation_days`` before the cut-off), never on the test window: a coordinate search from the paper's
Ta Feng setting, each step scoring NDCG@10 of a sample of the validation window's returning customers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.config import TrainingSettings
from recsvc_training.evaluation.baselines import (
    BaselineRecommender,
    GlobalPopularity,
    _purchases,
    _tile,
    popularity_score,
)
from recsvc_training.evaluation.metrics import ranking_metrics
from recsvc_training.evaluation.split import EvalIndex, validation_split
from recsvc_training.evaluation.topk import fill_unique

logger = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
_DEFAULT_WINDOW = TrainingSettings().popularity_window_days
#: Customers per block of the neighbour search: a block's distances are block x customers float64.
_BLOCK = 256


@dataclass(frozen=True)
class TifuParams:
    """TIFU-KNN's hyperparameters; the defaults are the paper's setting for Ta Feng."""

    group_size: int = 7
    within_decay: float = 0.9
    across_decay: float = 0.7
    neighbours: int = 300
    alpha: float = 0.7
    metric: str = "euclidean"

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.neighbours < 1:
            raise ValueError(f"group_size and neighbours must be >= 1, got {self.group_size}, {self.neighbours}")
        if not (0 < self.within_decay <= 1 and 0 < self.across_decay <= 1 and 0 <= self.alpha <= 1):
            raise ValueError("within_decay and across_decay must be in (0, 1], alpha in [0, 1]; got "
                             f"{self.within_decay}, {self.across_decay}, {self.alpha}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")


#: What :func:`tune_tifu_knn` tries, one parameter at a time, in this order.
TUNING_GRID: dict[str, tuple[Any, ...]] = {
    "group_size": (3, 7, 14),
    "within_decay": (0.8, 0.9, 1.0),
    "across_decay": (0.5, 0.7, 0.9),
    "metric": METRICS,
}
#: Searched jointly at every step (cheap: they reuse one neighbour search).
NEIGHBOURS_GRID = (100, 300, 600)
ALPHA_GRID = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)


def tifu_user_vectors(purchases: pd.DataFrame, n_customers: int, n_items: int, params: TifuParams
                      ) -> sp.csr_matrix:
    """CSR ``[n_customers, n_items]`` float64 of TIFU user vectors from purchase rows (c, i, day, basket).

    A basket's items count once however many lines they take; baskets are ordered by their first day, ties by
    their code (first appearance in the log, which is sorted by time).
    """
    lines = purchases.drop_duplicates(["basket", "i"])
    baskets = (lines.groupby("basket", sort=False).agg(c=("c", "first"), day=("day", "min")).reset_index()
               .sort_values(["c", "day", "basket"], kind="stable"))
    c = baskets["c"].to_numpy(dtype=np.int64)
    n_baskets = np.bincount(c, minlength=n_customers)
    first = np.concatenate([[0], np.cumsum(n_baskets)[:-1]])
    n = n_baskets[c]
    from_newest = n - 1 - (np.arange(len(c)) - first[c])  # 0 = the customer's newest basket
    m = params.group_size
    group = from_newest // m  # 0 = the newest group
    n_groups = -(-n // m)
    group_len = np.where(group == n_groups - 1, n - (n_groups - 1) * m, m)  # the oldest group holds the rest
    weight = (np.power(params.across_decay, group) * np.power(params.within_decay, from_newest % m)
              / (group_len * n_groups))
    basket_weight = pd.Series(weight, index=baskets["basket"].to_numpy())
    w = basket_weight.reindex(lines["basket"].to_numpy()).to_numpy()
    mat = sp.csr_matrix((w, (lines["c"].to_numpy(), lines["i"].to_numpy())), shape=(n_customers, n_items),
                        dtype=np.float64)
    mat.sum_duplicates()
    return mat


class _Neighbourhood:
    """Nearest customers by TIFU vector, for blocks of query rows (all candidates are customers with a vector)."""

    def __init__(self, vectors: sp.csr_matrix, metric: str) -> None:
        self.vectors = vectors
        self.metric = metric
        self._transposed = vectors.T.tocsr()
        self._sq_norms = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
        self._empty = np.diff(vectors.indptr) == 0

    def nearest(self, rows: np.ndarray, count: int) -> np.ndarray:
        """``[len(rows), count]`` customer rows, nearest first; -1 where fewer candidates exist."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), count), -1, dtype=np.int64)
        width = min(count, int((~self._empty).sum()) - 1)
        if width <= 0:
            return out
        for start in range(0, len(rows), _BLOCK):
            block = rows[start:start + _BLOCK]
            dist = (self.vectors[block] @ self._transposed).toarray()  # dot products, turned in place into:
            if self.metric == "euclidean":  # squared distances
                dist *= -2.0
                dist += self._sq_norms[block][:, None]
                dist += self._sq_norms[None, :]
            else:  # minus the cosine
                norms = np.sqrt(self._sq_norms)
                dist /= -np.maximum(norms[block][:, None] * norms[None, :], 1e-300)
            dist[:, self._empty] = np.inf
            dist[np.arange(len(block)), block] = np.inf  # never one's own neighbour
            part = np.argpartition(dist, width - 1, axis=1)[:, :width]
            order = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
            best = np.take_along_axis(part, order, axis=1)
            finite = np.isfinite(np.take_along_axis(dist, best, axis=1))
            out[start:start + len(block), :width] = np.where(finite, best, -1)
        out[self._empty[rows]] = -1  # no vector, no neighbourhood: the popularity fill answers
        return out


def _neighbour_weights(neighbours: np.ndarray, n_customers: int) -> sp.csr_matrix:
    """CSR ``[len(neighbours), n_customers]``: 1/count at each row's neighbours (-1 entries are absent)."""
    valid = neighbours >= 0
    count = valid.sum(axis=1)
    r = np.repeat(np.arange(len(neighbours)), count)
    return sp.csr_matrix(((1.0 / np.maximum(count, 1))[r], (r, neighbours[valid])),
                         shape=(len(neighbours), n_customers))


def top_k_rows(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """The ``k`` highest positive scores of each row of a dense ``[n, n_items]`` array, ties to the higher
    ``tiebreak``, then to the lower column (the order of :func:`~recsvc_training.evaluation.topk.top_k_sparse`,
    which is much slower on the million-entry score rows a neighbourhood gives); -1 padding."""
    n, n_items = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or n_items == 0 or k <= 0:
        return out
    width = min(k, n_items)
    # The k-th largest in float32 (partitions several times faster); rounding is monotone, so every entry at or
    # above the float64 k-th value is kept, and the exact order comes from the float64 scores below.
    # (Partitioning the negated scores at k is also far faster than at n - k, among the many zeros.)
    rounded = scores.astype(np.float32)
    kth = -np.partition(-rounded, width - 1, axis=1)[:, width - 1]
    r, c = np.nonzero((rounded >= kth[:, None]) & (scores > 0))  # every entry that can make the top k
    order = np.lexsort((c, -tiebreak[c], -scores[r, c], r))
    r, c = r[order], c[order]
    pos = np.arange(len(r)) - np.searchsorted(r, np.arange(n))[r]
    keep = pos < k
    out[r[keep], pos[keep]] = c[keep]
    return out


def _rank(vectors: sp.csr_matrix, rows: np.ndarray, neighbours: np.ndarray, alphas: Sequence[float], k: int,
          tiebreak: np.ndarray) -> dict[float, np.ndarray]:
    """Top ``k`` items of ``alpha * own + (1 - alpha) * neighbours' mean`` per query row, for every alpha.

    Exact without scoring the whole catalog per alpha: an item the customer never bought scores
    ``(1 - alpha) * mean``, so among those only the ``k`` best by the mean can make the list. The candidates are
    the customer's own items plus those ``k``, and each alpha only re-sorts them.
    """
    out = {alpha: np.full((len(rows), k), -1, dtype=np.int64) for alpha in alphas}
    for start in range(0, len(rows), _BLOCK):
        part = slice(start, start + _BLOCK)
        own = vectors[np.asarray(rows[part], dtype=np.int64)].tocoo()
        mean = (_neighbour_weights(neighbours[part], vectors.shape[0]) @ vectors).toarray()
        others = mean.copy()
        others[own.row, own.col] = 0.0
        best_other = top_k_rows(others, k, tiebreak)
        r_other, slot = np.nonzero(best_other >= 0)
        r = np.concatenate([own.row.astype(np.int64), r_other])
        c = np.concatenate([own.col.astype(np.int64), best_other[r_other, slot]])
        own_value = np.concatenate([own.data, np.zeros(len(r_other))])
        mean_value = mean[r, c]
        for alpha in alphas:
            score = alpha * own_value + (1.0 - alpha) * mean_value
            order = np.lexsort((c, -tiebreak[c], -score, r))
            rr, cc, ss = r[order], c[order], score[order]
            pos = np.arange(len(rr)) - np.searchsorted(rr, np.arange(mean.shape[0]))[rr]
            keep = (pos < k) & (ss > 0)
            out[alpha][part][rr[keep], pos[keep]] = cc[keep]
    return out


class TifuKNN(BaselineRecommender):
    """TIFU-KNN on the train split's purchases, filled with :class:`GlobalPopularity`.

    ``params`` fixes the hyperparameters; without it, ``fit`` chooses them with :func:`tune_tifu_knn` on a
    validation window inside the train split (``tuned`` then says what was chosen and its validation score).
    """

    name = "tifu_knn"
    serves_new_customers = False  # no vector, no neighbours: it would only repeat GlobalPopularity

    def __init__(self, params: TifuParams | None = None, popularity_window_days: int | None = _DEFAULT_WINDOW,
                 validation_days: int = 28, max_validation_customers: int = 1000, seed: int = 0) -> None:
        self.params = params
        self.popularity = GlobalPopularity(popularity_window_days)
        self.validation_days = validation_days
        self.max_validation_customers = max_validation_customers
        self.seed = seed
        self.tuned: dict[str, Any] = {}
        self.vectors = sp.csr_matrix((0, 0))
        self._neighbourhood: _Neighbourhood | None = None

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> TifuKNN:
        if self.params is None:
            self.params, self.tuned = tune_tifu_knn(train_events, self.validation_days,
                                                    self.max_validation_customers, self.seed)
        self.popularity.fit(train_events, index)
        self.vectors = tifu_user_vectors(_purchases(train_events, index), index.n_customers, index.n_items,
                                         self.params)
        self._neighbourhood = _Neighbourhood(self.vectors, self.params.metric)
        return self

    def scores(self, customer_rows: np.ndarray) -> sp.csr_matrix:
        """TIFU-KNN scores ``[len(customer_rows), n_items]`` (CSR; empty rows for customers without purchases).

        What a candidate source or a ranker feature would read; ``recommend`` ranks the same numbers."""
        rows = np.asarray(customer_rows, dtype=np.int64)
        params, nearest = self._nearest(rows)
        weights = _neighbour_weights(nearest, self.vectors.shape[0])
        return (params.alpha * self.vectors[rows] + (1.0 - params.alpha) * (weights @ self.vectors)).tocsr()

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        rows = np.asarray(customer_rows, dtype=np.int64)
        params, nearest = self._nearest(rows)
        pop = self.popularity.ranking
        own = _rank(self.vectors, rows, nearest, [params.alpha], k, popularity_score(pop))[params.alpha]
        return fill_unique(np.hstack([own, _tile(pop, len(rows), 2 * k)]), k, len(pop))

    def _nearest(self, rows: np.ndarray) -> tuple[TifuParams, np.ndarray]:
        if self._neighbourhood is None or self.params is None:
            raise RuntimeError("TifuKNN used before fit")
        return self.params, self._neighbourhood.nearest(rows, self.params.neighbours)


def tune_tifu_knn(train_events: pd.DataFrame, validation_days: int = 28, max_customers: int = 1000,
                  seed: int = 0, start: TifuParams | None = None, grid: dict[str, Iterable[Any]] | None = None,
                  k: int = 10) -> tuple[TifuParams, dict[str, Any]]:
    """Choose TIFU-KNN's hyperparameters on the last ``validation_days`` of ``train_events``.

    Coordinate search from ``start`` (the paper's Ta Feng setting): each parameter of ``grid`` in turn takes
    the value with the best NDCG@``k`` with the others held, and at every trial ``neighbours`` and ``alpha``
    are searched jointly over :data:`NEIGHBOURS_GRID` x :data:`ALPHA_GRID` (one neighbour search serves them
    all). Scored on at most ``max_customers`` of the validation window's returning customers (a seeded sample).
    Returns the chosen parameters and a summary (validation NDCG, trials, seconds). When the train side is too
    short for a validation window, returns ``start`` unchanged.
    """
    started = time.perf_counter()
    best = start or TifuParams()
    try:
        val = validation_split(train_events, validation_days)
    except ValueError as exc:
        logger.info("TIFU-KNN not tuned (%s); using %s", exc, best)
        return best, {"tuned": False}
    truth = val.truth
    if len(truth) > max_customers:
        keep = np.sort(np.random.default_rng(seed).choice(len(truth), max_customers, replace=False))
        truth = truth.subset(np.isin(np.arange(len(truth)), keep))
    purchases = _purchases(val.train, val.index)
    pop = GlobalPopularity(_DEFAULT_WINDOW).fit(val.train, val.index).ranking
    pop_score = popularity_score(pop)
    rows = truth.customer_rows
    trials: dict[TifuParams, float] = {}

    def search(params: TifuParams) -> TifuParams:
        """Best (neighbours, alpha) for the vector settings of ``params``; every pair scored into ``trials``."""
        vectors = tifu_user_vectors(purchases, val.index.n_customers, val.index.n_items, params)
        nearest = _Neighbourhood(vectors, params.metric).nearest(rows, max(NEIGHBOURS_GRID))
        for n in NEIGHBOURS_GRID:
            for alpha, own in _rank(vectors, rows, nearest[:, :n], ALPHA_GRID, k, pop_score).items():
                recs = fill_unique(np.hstack([own, _tile(pop, len(rows), 2 * k)]), k, len(pop))
                trial = dataclasses.replace(params, neighbours=n, alpha=alpha)
                trials[trial] = ranking_metrics(recs, truth.items, k)[f"ndcg@{k}"]
        return max((p for p in trials if _same_vectors(p, params)), key=lambda p: trials[p])

    best = search(best)
    for field, values in (grid or TUNING_GRID).items():
        for value in values:
            if getattr(best, field) != value:
                candidate = search(dataclasses.replace(best, **{field: value}))
                if trials[candidate] > trials[best]:
                    best = candidate
    summary = {"tuned": True, "validation_ndcg": round(trials[best], 6), "validation_customers": len(truth),
               "validation_cutoff_day": val.cutoff_day, "trials": len(trials),
               "seconds": round(time.perf_counter() - started, 2), **dataclasses.asdict(best)}
    logger.info("TIFU-KNN tuned on the validation window: %s", summary)
    return best, summary


def _same_vectors(a: TifuParams, b: TifuParams) -> bool:
    """Whether two settings share user vectors and neighbour metric (differ at most in neighbours, alpha)."""
    return (a.group_size, a.within_decay, a.across_decay, a.metric) == (b.group_size, b.within_decay,
                                                                          b.across_decay, b.metric)
