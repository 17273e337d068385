"""Baseline recommenders, fitted on the train side of a split and scored on the same split as the real model.

Every baseline follows the :class:`~recsvc_training.evaluation.protocols.Recommender` interface:
``fit(train_events, index)`` then ``recommend(customer_rows, channels, k)``, on rows of the split's
:class:`~recsvc_training.evaluation.split.EvalIndex`. None of them removes items the customer already bought:
in grocery a repeat purchase is the commonest hit, and a baseline that hides it would be a straw man.
Defaults follow :class:`recsvc.config.TrainingSettings`, so a baseline is as tuned as the trainer's own model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsvc.config import TrainingSettings
from recsvc_training.evaluation.split import EvalIndex
from recsvc_training.evaluation.topk import fill_unique, top_k_sparse
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

_DEFAULTS = TrainingSettings()


def _reference_day(train_events: pd.DataFrame) -> int:
    """Day ages are measured from: the day after the last train event (the cut-off, for a time split)."""
    return int(train_events[C.DAY].max()) + 1 if len(train_events) else 0


def _purchases(train_events: pd.DataFrame, index: EvalIndex) -> pd.DataFrame:
    """Purchase events as rows: c (customer row), i (item row), day, channel and basket (an int code per
    ``basket_id``, or per customer and day where the frame has no basket column); unknown ids dropped."""
    bought = train_events[train_events[C.EVENT] == C.PURCHASE]
    customer = bought[C.CUSTOMER_ID].astype(str)
    basket = (bought[C.BASKET_ID].astype(str) if C.BASKET_ID in bought
              else customer + "@" + bought[C.DAY].astype(str))
    frame = pd.DataFrame({"c": index.customer_rows(customer.to_numpy()),
                          "i": index.item_rows(bought[C.ITEM_ID].to_numpy()),
                          "day": bought[C.DAY].to_numpy(dtype=np.int64),
                          "channel": bought[C.CHANNEL].astype(str).to_numpy(),
                          "basket": pd.factorize((customer + "|" + basket).to_numpy())[0].astype(np.int64)})
    return frame[(frame["c"] >= 0) & (frame["i"] >= 0)]


def popularity_score(ranking: np.ndarray) -> np.ndarray:
    """One float per item row, higher = earlier in ``ranking``: the tiebreak and fill order of a model."""
    score = np.empty(len(ranking))
    score[ranking] = -np.arange(len(ranking), dtype=np.float64)
    return score


def popularity_ranking(purchases: pd.DataFrame, n_items: int, window_days: int | None,
                       reference_day: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Every item row, most popular first.

    Popularity = purchase events in the last ``window_days`` days before ``reference_day`` (None = all),
    ties broken by all-time purchase events, then by ``tiebreak`` (higher first), then by item row.
    """
    all_time = np.bincount(purchases["i"].to_numpy(), minlength=n_items).astype(np.float64)
    recent = purchases[purchases["day"] >= reference_day - window_days] if window_days else purchases
    window = np.bincount(recent["i"].to_numpy(), minlength=n_items).astype(np.float64)
    third = np.zeros(n_items) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64)
    return np.lexsort((np.arange(n_items), -third, -all_time, -window)).astype(np.int64)


def weighted_interactions(train_events: pd.DataFrame, index: EvalIndex,
                          event_weights: Mapping[str, float] = _DEFAULTS.event_weights,
                          half_life_days: float = _DEFAULTS.recency_half_life_days) -> sp.csr_matrix:
    """CSR [n_customers, n_items] float32 of recency-decayed event weights, the input of ALS and item-kNN.

    Each event adds ``event_weights[event] * 0.5 ** (age / half_life_days)``; a return subtracts the purchase
    weight instead (it cancels the purchase), and pairs that end at or below zero are dropped.
    """
    weights = {str(k): float(v) for k, v in event_weights.items()}
    weights[C.RETURN] = -weights.get(C.PURCHASE, 0.0)
    ev = train_events[train_events[C.EVENT].isin(list(weights))]
    rows = index.customer_rows(ev[C.CUSTOMER_ID].to_numpy())
    cols = index.item_rows(ev[C.ITEM_ID].to_numpy())
    age = _reference_day(train_events) - ev[C.DAY].to_numpy(dtype=np.float64)
    w = ev[C.EVENT].map(weights).to_numpy(dtype=np.float64) * np.power(0.5, age / half_life_days)
    ok = (rows >= 0) & (cols >= 0)
    mat = sp.csr_matrix((w[ok], (rows[ok], cols[ok])), shape=(index.n_customers, index.n_items),
                        dtype=np.float64)
    mat.sum_duplicates()
    mat.data[mat.data <= 0] = 0
    mat.eliminate_zeros()
    return mat.astype(np.float32)


class BaselineRecommender:
    """What the baselines share: a name, a flag for the new-customer slice, fit and recommend, fit time."""

    name = "baseline"
    #: Whether the model has something sensible for customers without history (scored on that slice).
    serves_new_customers = False
    #: Seconds the last ``fit`` took (set by :func:`fit_baselines`; copied into the report).
    fit_seconds = 0.0

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> BaselineRecommender:
        raise NotImplementedError

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        raise NotImplementedError


def _tile(ranking: np.ndarray, n: int, k: int) -> np.ndarray:
    top = ranking[:k]
    if len(top) < k:
        top = np.concatenate([top, np.full(k - len(top), -1, dtype=np.int64)])
    return np.tile(top, (n, 1))


class GlobalPopularity(BaselineRecommender):
    """The same list for everyone: most purchase events in the last ``window_days`` of the train split."""

    name = "popularity"
    serves_new_customers = True

    def __init__(self, window_days: int | None = _DEFAULTS.popularity_window_days) -> None:
        self.window_days = window_days
        self.ranking = np.zeros(0, dtype=np.int64)

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> GlobalPopularity:
        self.ranking = popularity_ranking(_purchases(train_events, index), index.n_items, self.window_days,
                                          _reference_day(train_events))
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        return _tile(self.ranking, len(customer_rows), k)


class ChannelPopularity(BaselineRecommender):
    """Popularity within the customer's channel, ties and gaps filled by global popularity.

    A channel the train split never saw gets the global list.
    """

    name = "channel_popularity"
    serves_new_customers = True

    def __init__(self, window_days: int | None = _DEFAULTS.popularity_window_days) -> None:
        self.window_days = window_days
        self.global_ranking = np.zeros(0, dtype=np.int64)
        self.rankings: dict[str, np.ndarray] = {}

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> ChannelPopularity:
        bought = _purchases(train_events, index)
        ref = _reference_day(train_events)
        self.global_ranking = popularity_ranking(bought, index.n_items, self.window_days, ref)
        global_score = popularity_score(self.global_ranking)
        self.rankings = {str(ch): popularity_ranking(part, index.n_items, self.window_days, ref, global_score)
                         for ch, part in bought.groupby("channel", sort=True)}
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        ch = np.asarray(channels, dtype=object)
        out = _tile(self.global_ranking, len(customer_rows), k)
        for channel in np.unique(ch):  # a handful of channels, not items
            ranking = self.rankings.get(str(channel))
            if ranking is not None:
                mask = ch == channel
                out[mask] = _tile(ranking, int(mask.sum()), k)
        return out


class BuyItAgain(BaselineRecommender):
    """The customer's own purchases, most frequent and recent first, filled with global popularity.

    Score of an item = sum over the customer's purchase events of ``0.5 ** (age_days / half_life_days)``.
    Customers without purchases get the popularity list.
    """

    name = "buy_it_again"
    serves_new_customers = False  # it would only repeat GlobalPopularity

    def __init__(self, half_life_days: float = _DEFAULTS.recency_half_life_days,
                 window_days: int | None = _DEFAULTS.popularity_window_days) -> None:
        self.half_life_days = half_life_days
        self.popularity = GlobalPopularity(window_days)
        self.scores = sp.csr_matrix((0, 0), dtype=np.float64)
        self._pop_score = np.zeros(0)

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> BuyItAgain:
        self.popularity.fit(train_events, index)
        self._pop_score = popularity_score(self.popularity.ranking)
        self.scores = self._own_scores(train_events, index)
        return self

    def _own_scores(self, train_events: pd.DataFrame, index: EvalIndex) -> sp.csr_matrix:
        bought = _purchases(train_events, index)
        age = _reference_day(train_events) - bought["day"].to_numpy(dtype=np.float64)
        decay = np.power(0.5, age / self.half_life_days)
        scores = sp.csr_matrix((decay, (bought["c"].to_numpy(), bought["i"].to_numpy())),
                               shape=(index.n_customers, index.n_items), dtype=np.float64)
        scores.sum_duplicates()
        return scores

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        rows = np.asarray(customer_rows, dtype=np.int64)
        own = top_k_sparse(self.scores[rows], k, tiebreak=self._pop_score)
        fallback = _tile(self.popularity.ranking, len(rows), 2 * k)
        return fill_unique(np.hstack([own, fallback]), k, self.scores.shape[1])


class BuyItAgainByCount(BuyItAgain):
    """The customer's own items by how many times they were bought, ties to the more recent, then popularity.

    "Times bought" counts purchase baskets (an order, or a customer's day where there is no order id), so an
    item listed twice on one receipt was bought once. Customers without purchases get the popularity list,
    and the popularity list fills what the history leaves empty. The outside measurement of issue 14 found
    this plain count stronger than the recency-weighted :class:`BuyItAgain` on Ta Feng.
    """

    name = "buy_it_again_by_count"

    def __init__(self, window_days: int | None = _DEFAULTS.popularity_window_days) -> None:
        super().__init__(window_days=window_days)

    def _own_scores(self, train_events: pd.DataFrame, index: EvalIndex) -> sp.csr_matrix:
        bought = _purchases(train_events, index).drop_duplicates(["basket", "i"])
        per_pair = bought.groupby(["c", "i"], sort=False)["day"].agg(["size", "max"])
        c = per_pair.index.get_level_values(0).to_numpy(dtype=np.int64)
        i = per_pair.index.get_level_values(1).to_numpy(dtype=np.int64)
        first = int(bought["day"].min()) if len(bought) else 0
        span = (int(bought["day"].max()) - first + 2) if len(bought) else 1
        # One exact float per pair that sorts by count, then by last day (both small ints; far below 2**53).
        score = per_pair["size"].to_numpy(np.float64) * span + (per_pair["max"].to_numpy(np.float64) - first + 1)
        return sp.csr_matrix((score, (c, i)), shape=(index.n_customers, index.n_items), dtype=np.float64)


class _ImplicitRecommender(BaselineRecommender):
    """Shared part of the two ``implicit`` baselines: the weighted matrix and batch recommend."""

    def __init__(self, event_weights: Mapping[str, float], half_life_days: float) -> None:
        self.event_weights = dict(event_weights)
        self.half_life_days = half_life_days
        self.user_items = sp.csr_matrix((0, 0), dtype=np.float32)
        self.model: Any = None  # an implicit model once fitted

    def _recommend_rows(self, customer_rows: np.ndarray, k: int, positive_only: bool) -> np.ndarray:
        rows = np.asarray(customer_rows, dtype=np.int64)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.recommend called before fit")
        n_users, n_items = self.user_items.shape
        known = (rows >= 0) & (rows < n_users)
        known[known] = np.diff(self.user_items.indptr)[rows[known]] > 0  # no history, nothing to say
        if not known.any() or n_items == 0:
            return out
        width = min(k, n_items)
        ids, scores = self.model.recommend(rows[known], self.user_items[rows[known]], N=width,
                                           filter_already_liked_items=False)
        ids = np.asarray(ids, dtype=np.int64).reshape(int(known.sum()), -1)
        if positive_only:  # item-kNN: a zero score is "no neighbour", not a recommendation
            ids = np.where(np.asarray(scores).reshape(ids.shape) > 0, ids, -1)
        out[known, : ids.shape[1]] = ids
        return out


class ALSRecommender(_ImplicitRecommender):
    """``implicit`` ALS alone, on recency-weighted event weights; confidence = alpha * log1p(weight).

    The trainer's convention (:class:`recsvc.config.TrainingSettings`): ``implicit`` reads a stored value as
    the cell's confidence, so ``implicit``'s own ``alpha`` stays 1.0. Unlike the trainer's matrix,
    quantities are not used: one event is one event.
    """

    name = "als"

    def __init__(self, factors: int = _DEFAULTS.als_factors, iterations: int = _DEFAULTS.als_iterations,
                 regularization: float = _DEFAULTS.als_regularization, alpha: float = _DEFAULTS.als_alpha,
                 random_state: int = _DEFAULTS.als_random_state,
                 event_weights: Mapping[str, float] = _DEFAULTS.event_weights,
                 half_life_days: float = _DEFAULTS.recency_half_life_days) -> None:
        super().__init__(event_weights, half_life_days)
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> ALSRecommender:
        from implicit.als import AlternatingLeastSquares

        weights = weighted_interactions(train_events, index, self.event_weights, self.half_life_days)
        confidence = weights.copy()
        confidence.data = (self.alpha * np.log1p(confidence.data)).astype(np.float32)
        # implicit runs its own threads; a multi-threaded BLAS underneath them only oversubscribes the CPU.
        # The model is built inside the limit too: its constructor checks (and warns about) the BLAS config.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=self.factors, iterations=self.iterations,
                                            regularization=self.regularization, alpha=1.0,
                                            random_state=self.random_state, use_gpu=False)
            model.fit(confidence, show_progress=False)
        self.user_items = confidence
        self.model = model
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        return self._recommend_rows(customer_rows, k, positive_only=False)


class ItemKNN(_ImplicitRecommender):
    """``implicit`` item-item cosine kNN alone (K neighbours per item) on recency-weighted event weights.

    Customers whose items have fewer than ``k`` neighbours in total get a shorter list (-1 padded): it is
    the model alone, without a popularity fill.
    """

    name = "item_knn"

    def __init__(self, neighbours: int = 100, event_weights: Mapping[str, float] = _DEFAULTS.event_weights,
                 half_life_days: float = _DEFAULTS.recency_half_life_days) -> None:
        super().__init__(event_weights, half_life_days)
        self.neighbours = neighbours

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        weights = weighted_interactions(train_events, index, self.event_weights, self.half_life_days)
        model = CosineRecommender(K=self.neighbours)
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # CosineRecommender normalises into a COO matrix itself, then warns about its own conversion.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(weights, show_progress=False)
        self.user_items = weights
        self.model = model
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        return self._recommend_rows(customer_rows, k, positive_only=True)
