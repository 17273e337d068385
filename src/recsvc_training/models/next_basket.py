"""TIFU-KNN lists for every customer: the next-basket candidate source, ranker feature and servable baseline.

The maths is the evaluation's TIFU-KNN (:mod:`recsvc_training.evaluation.nextbasket`, Hu et al., SIGIR 2020):
the same user vectors, the same neighbour search and the same score, so the ``tifu_knn`` policy serves what
the ``tifu_knn`` baseline is measured to do. Here it runs once per build over every customer with a purchase
and keeps each customer's top ``k`` items with their scores (:mod:`recsvc.artifacts.parts.next_basket`).

The hyperparameters are chosen once per training run (:func:`tune_next_basket`, on the validation window
before the evaluation's cut-off, so the evaluation never sees its test window through them) and reused by
every build of the run: the evaluation split's, each label window's and the published one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.config import TrainingSettings
from recsvc_training.evaluation.nextbasket import (
    TifuParams,
    _neighbour_weights,
    tifu_user_vectors,
    top_k_rows,
    tune_tifu_knn,
)
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.id_maps import EventRows, IdMaps

logger = logging.getLogger(__name__)

#: Items kept per customer: the ranker's pool asks each source for ``ranker_pool_per_source`` (100).
DEFAULT_LIST_LENGTH = 100
#: Dense score cells per block of customers (a block's scores are block x n_items float64).
_BLOCK_CELLS = 8_000_000
#: Customers the neighbours are drawn from (see :func:`build_next_basket`).
MAX_NEIGHBOUR_POOL = 10_000


@dataclasses.dataclass(frozen=True)
class TunedNextBasket:
    """The run's TIFU-KNN hyperparameters and how they were chosen (``summary``, for the manifest)."""

    params: TifuParams
    summary: dict[str, Any]


def tune_next_basket(data: TrainingData, settings: TrainingSettings) -> TunedNextBasket:
    """Choose TIFU-KNN's hyperparameters once for a run, on events before the evaluation's cut-off.

    The validation window is the last ``eval_test_days`` before that cut-off (the window the evaluation's own
    TIFU-KNN baseline was tuned on before it reused this), 1,000 sampled returning customers, NDCG@10.
    """
    events = data.events
    end = int(events[C.DAY].max())
    cutoff = end + 1 - settings.eval_test_days if settings.evaluate else end + 1
    before = events[events[C.DAY].to_numpy() < cutoff]
    params, summary = tune_tifu_knn(before, validation_days=settings.eval_test_days)
    return TunedNextBasket(params, {**summary, **dataclasses.asdict(params)})


def _purchase_frame(events: EventRows) -> pd.DataFrame:
    """Purchase events as the (c, i, day, basket) rows TIFU's user vectors are built from; lines without a
    basket id form one basket per customer and day."""
    bought = events.subset(events.mask(C.PURCHASE))
    customer = bought.customer.astype(np.int64)
    day = bought.day.astype(np.int64)
    has_basket = bought.basket >= 0
    span = int(max(bought.basket.max(initial=0), day.max(initial=0) - day.min(initial=0))) + 1
    # a basket is (customer, basket id), or (customer, day) without an id: ids need not be unique across customers
    key = customer * (2 * span) + np.where(has_basket, bought.basket, span + day - day.min(initial=0))
    return pd.DataFrame({"c": customer, "i": bought.item.astype(np.int64), "day": day,
                         "basket": pd.factorize(key)[0].astype(np.int64)})


def _nearest(vectors: sp.csr_matrix, query: np.ndarray, pool: np.ndarray, sq_norms: np.ndarray,
             pool_t: sp.csr_matrix, count: int, metric: str) -> np.ndarray:
    """``[len(query), count]`` customer rows from ``pool`` nearest to each query row (never itself), nearest
    first, ``-1`` padded: the distance of :class:`~recsvc_training.evaluation.nextbasket._Neighbourhood`."""
    out = np.full((query.size, count), -1, dtype=np.int64)
    width = min(count, pool.size - 1)
    if width <= 0:
        return out
    dist = (vectors[query] @ pool_t).toarray()
    if metric == "euclidean":
        dist *= -2.0
        dist += sq_norms[query][:, None]
        dist += sq_norms[pool][None, :]
    else:
        norms = np.sqrt(sq_norms)
        dist /= -np.maximum(norms[query][:, None] * norms[pool][None, :], 1e-300)
    dist[query[:, None] == pool[None, :]] = np.inf  # never one's own neighbour
    part = np.argpartition(dist, width - 1, axis=1)[:, :width]
    order = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
    out[:, :width] = pool[np.take_along_axis(part, order, axis=1)]
    return out


def build_next_basket(events: EventRows, maps: IdMaps, tiebreak: np.ndarray, tuned: TunedNextBasket | None = None,
                      k: int = DEFAULT_LIST_LENGTH, max_neighbour_pool: int = MAX_NEIGHBOUR_POOL) -> NextBasket:
    """Each customer's top ``k`` items by TIFU-KNN score (ties to the higher ``tiebreak``, per item row, then
    the lower row); customers without a purchase get an empty row. Without ``tuned``, the paper's Ta Feng
    setting.

    Neighbours are searched among at most ``max_neighbour_pool`` customers, those with the most baskets (ties
    to the lower row): the search costs customers x pool, and on a log with more customers than that (Ta
    Feng's 32,266) the full pool made this step the longest of a build. Below the cap the lists are exactly
    the evaluation's TIFU-KNN.
    """
    started = time.perf_counter()
    params = tuned.params if tuned is not None else TifuParams()
    n_customers, n_items = maps.n_customers, maps.n_items
    frame = _purchase_frame(events)
    vectors = tifu_user_vectors(frame, n_customers, n_items, params)
    rows = np.flatnonzero(np.diff(vectors.indptr) > 0)
    baskets = np.bincount(frame.drop_duplicates("basket")["c"].to_numpy(), minlength=n_customers)
    pool = rows if rows.size <= max_neighbour_pool else np.sort(
        rows[np.lexsort((rows, -baskets[rows]))[:max_neighbour_pool]])
    width = min(k, n_items)
    counts = np.zeros(n_customers, dtype=np.int64)
    items_out: list[np.ndarray] = []
    scores_out: list[np.ndarray] = []
    if rows.size and width > 0:
        sq_norms = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
        pool_t = vectors[pool].T.tocsr()
        vectors_t = vectors.T.tocsr()
        block = max(16, min(256, _BLOCK_CELLS // max(n_items, pool.size, 1)))
        tie = np.asarray(tiebreak, dtype=np.float64)
        for start in range(0, rows.size, block):
            part = rows[start:start + block]
            nearest = _nearest(vectors, part, pool, sq_norms, pool_t, params.neighbours, params.metric)
            weights = _neighbour_weights(nearest, n_customers)
            # items x block is the cheaper product; the own term is added densely (a sparse sum costs more)
            score = np.ascontiguousarray((vectors_t @ weights.T.tocsr()).toarray().T)
            score *= 1.0 - params.alpha
            own = vectors[part].tocoo()
            score[own.row, own.col] += params.alpha * own.data
            top = top_k_rows(score, width, tie)
            valid = top >= 0
            values = np.take_along_axis(score, np.maximum(top, 0), axis=1)
            counts[part] = valid.sum(axis=1)
            items_out.append(top[valid].astype(np.int32))
            scores_out.append(values[valid].astype(np.float32))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    items = np.concatenate(items_out) if items_out else np.zeros(0, dtype=np.int32)
    scores = np.concatenate(scores_out) if scores_out else np.zeros(0, dtype=np.float32)
    # float32 rounding can turn a tiny positive score into 0; the part stores positive scores only
    scores = np.maximum(scores, np.float32(np.finfo(np.float32).tiny))
    summary = {**(tuned.summary if tuned is not None else {"tuned": False}), **dataclasses.asdict(params)}
    summary.update(list_length=width, customers=int(rows.size), neighbour_pool=int(pool.size),
                   build_seconds=round(time.perf_counter() - started, 2))
    logger.info("TIFU-KNN lists for %d customers (top %d) in %.1fs", rows.size, width, summary["build_seconds"])
    return NextBasket(indptr, items, scores, summary)
