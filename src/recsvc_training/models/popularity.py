"""Popularity: what sells now, overall, per channel and per store (the fallback for every cold start).

An item's score is the recency-decayed weighted event count of the last ``popularity_window_days`` days:
each event counts ``event_weights[type] × min(quantity, QUANTITY_CAP) × 0.5 ** (age / half_life)``, so a
purchase counts more than a cart, a cart more than a view; returns cancel purchases (netted per item, floored
at 0), exactly as in the ALS confidence (:mod:`recsvc_training.models.interactions`).

Items without an event in the window still get a small score from their all-time (undecayed) weighted
counts, scaled to stay below half of the smallest in-window score of the same list, so the ordering of the
whole catalog is defined and an item sold last year ranks above one never sold (which scores exactly 0).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsvc.artifacts.parts.popularity import ITEM_TREND, POP_CHANNEL, POP_GLOBAL, POP_STORE_ITEMS, POP_STORE_SCORES
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import EventRows, IdMaps
from recsvc_training.models.interactions import event_weights, net_weight_matrix, top_k_per_row

logger = logging.getLogger(__name__)


def build_popularity(events: EventRows, maps: IdMaps, settings: TrainingSettings,
                     end_day: int) -> dict[str, np.ndarray]:
    """Popularity arrays, named as in :mod:`recsvc.artifacts`.

    Returns
    -------
    dict with
        ``pop_global`` float32 ``[n_items]``, ``pop_channel`` float32 ``[n_channels, n_items]`` (channel
        axis in ``maps.channels`` order), ``pop_store_items`` int32 ``[n_stores, k]`` (item rows, best
        first, ``-1`` pads stores with fewer than ``k`` scored items) and ``pop_store_scores`` float32
        ``[n_stores, k]`` (0 where padded); ``k = settings.popularity_store_top_k``. Scores are in
        "decayed weighted events" (one purchase today = ``event_weights['purchase']``), comparable across
        lists of the same run only. Events without a store do not count for any store.
    """
    decayed = event_weights(events, settings, end_day)
    undecayed = event_weights(events, settings, end_day, decay=False)
    netted = events.mask(C.PURCHASE, C.RETURN)
    if settings.popularity_window_days > 0:
        in_window = events.day > end_day - int(settings.popularity_window_days)
    else:
        in_window = np.ones(len(events), dtype=bool)
    n_items = maps.n_items

    def scores(group: np.ndarray, n_groups: int, keep: np.ndarray | None = None) -> sp.csr_matrix:
        sel = np.ones(len(events), dtype=bool) if keep is None else keep
        recent = sel & in_window
        window = net_weight_matrix(group[recent], events.item[recent], decayed[recent], (n_groups, n_items),
                                   netted[recent])
        all_time = net_weight_matrix(group[sel], events.item[sel], undecayed[sel], (n_groups, n_items),
                                     netted[sel])
        return _with_all_time_fallback(window, all_time)

    zeros = np.zeros(len(events), dtype=np.int64)
    pop_global = scores(zeros, 1).toarray()[0].astype(np.float32)
    pop_channel = scores(events.channel.astype(np.int64), maps.n_channels).toarray().astype(np.float32)

    k = max(int(settings.popularity_store_top_k), 0)
    store_items = np.full((maps.n_stores, k), -1, dtype=np.int32)
    store_scores = np.zeros((maps.n_stores, k), dtype=np.float32)
    has_store = events.store >= 0
    if maps.n_stores and k and has_store.any():
        per_store = scores(events.store.astype(np.int64), maps.n_stores, has_store)
        indptr, positions, rows = top_k_per_row(per_store, k)
        slot = np.arange(positions.size, dtype=np.int64) - np.repeat(indptr[:-1], np.diff(indptr))
        store_items[rows, slot] = per_store.indices[positions]
        store_scores[rows, slot] = per_store.data[positions]
    logger.info("popularity: %d items scored overall, %d channels, %d stores (top %d)",
                int((pop_global > 0).sum()), maps.n_channels, maps.n_stores, k)
    return {POP_GLOBAL: pop_global, POP_CHANNEL: pop_channel,
            POP_STORE_ITEMS: store_items, POP_STORE_SCORES: store_scores,
            ITEM_TREND: item_trend(events, maps.n_items, end_day)}


#: Days of the recent and the reference stretch :func:`item_trend` compares.
TREND_RECENT_DAYS = 7
TREND_REFERENCE_DAYS = 28


def item_trend(events: EventRows, n_items: int, end_day: int) -> np.ndarray:
    """``log1p(buyers in the last 7 days x 4) - log1p(buyers in the last 28 days)`` per item: > 0 for an
    item bought by more customers this week than its four-week rate (a promotion, a season starting), < 0 for
    one fading. Distinct customers, not units, so one bulk order does not make a trend."""
    bought = events.mask(C.PURCHASE)

    def buyers(days: int) -> np.ndarray:
        keep = bought & (events.day > end_day - days) & (events.day <= end_day)
        pairs = np.unique(events.item[keep].astype(np.int64) * (1 << 32) + events.customer[keep].astype(np.int64))
        return np.bincount(pairs >> 32, minlength=n_items).astype(np.float64)

    recent, reference = buyers(TREND_RECENT_DAYS), buyers(TREND_REFERENCE_DAYS)
    scale = TREND_REFERENCE_DAYS / TREND_RECENT_DAYS
    return (np.log1p(recent * scale) - np.log1p(reference)).astype(np.float32)


def _with_all_time_fallback(window: sp.csr_matrix, all_time: sp.csr_matrix) -> sp.csr_matrix:
    """``window`` plus, for cells it leaves empty, all-time scores scaled below each row's window scores."""
    window_pattern = window.copy()
    window_pattern.data = np.ones_like(window_pattern.data)
    fallback = (all_time - all_time.multiply(window_pattern)).tocsr()
    fallback.eliminate_zeros()
    if fallback.nnz == 0:
        return window
    n_rows = window.shape[0]
    # ceiling of each row's fallback: half its smallest window score, or 1 when the row has none
    ceiling = np.ones(n_rows, dtype=np.float64)
    filled = np.diff(window.indptr) > 0
    if filled.any():
        ceiling[filled] = 0.5 * np.minimum.reduceat(window.data, window.indptr[:-1][filled])
    top = np.ones(n_rows, dtype=np.float64)
    has_fallback = np.diff(fallback.indptr) > 0
    top[has_fallback] = np.maximum.reduceat(fallback.data, fallback.indptr[:-1][has_fallback])
    scale = sp.diags(ceiling / top)
    return (window + scale @ fallback).tocsr()
