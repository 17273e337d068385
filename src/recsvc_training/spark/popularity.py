"""Popularity on Spark: overall, per channel and per store, as :mod:`recsvc_training.models.popularity` builds it.

The sums over events (recency-decayed in the window, undecayed over all time, purchases netted with returns per
cell) are one Spark aggregation per list; what comes back is one row per (list, item) with a score, at most
``(1 + channels + stores) x items`` rows, the size of the part itself. The all-time fallback and the per-store
top lists are then the single-node functions on those cells, so the rules cannot drift apart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsvc.artifacts.parts.popularity import ITEM_TREND, POP_CHANNEL, POP_GLOBAL, POP_STORE_ITEMS, POP_STORE_SCORES
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps
from recsvc_training.models.interactions import top_k_per_row
from recsvc_training.models.popularity import TREND_RECENT_DAYS, TREND_REFERENCE_DAYS, _with_all_time_fallback
from recsvc_training.spark.events import (
    CHANNEL,
    CUSTOMER,
    EVENT,
    ITEM,
    NETTED,
    STORE,
    WEIGHT,
    WEIGHT_ALL_TIME,
    event_code,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)


def net_cells(rows: DataFrame, group: Column, weight: str, n_groups: int, n_items: int) -> sp.csr_matrix:
    """Sum ``weight`` per (group, item), the purchase part floored at 0 before views and carts are added
    (:func:`recsvc_training.models.interactions.net_weight_matrix`), as a float64 CSR ``[n_groups, n_items]``."""
    from pyspark.sql import functions as F

    cells = (rows.groupBy(group.alias("_g"), F.col(ITEM))
             .agg(F.sum(F.when(F.col(NETTED), F.col(weight))).alias("_net"),
                  F.sum(F.when(~F.col(NETTED), F.col(weight))).alias("_rest")))
    total = F.greatest(F.greatest(F.coalesce(F.col("_net"), F.lit(0.0)), F.lit(0.0))
                       + F.coalesce(F.col("_rest"), F.lit(0.0)), F.lit(0.0))
    collected = cells.select("_g", ITEM, total.alias("_score")).where(F.col("_score") > 0).toPandas()
    matrix = sp.csr_matrix((collected["_score"].to_numpy(dtype=np.float64),
                            (collected["_g"].to_numpy(dtype=np.int64), collected[ITEM].to_numpy(dtype=np.int64))),
                           shape=(n_groups, n_items), dtype=np.float64)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def build_spark_popularity(rows: DataFrame, maps: IdMaps, settings: TrainingSettings,
                           end_day: int) -> dict[str, np.ndarray]:
    """The popularity arrays of :func:`recsvc_training.models.popularity.build_popularity`, from Spark sums."""
    from pyspark.sql import functions as F

    n_items = maps.n_items
    window_days = int(settings.popularity_window_days)
    recent = rows.where(F.col(C.DAY) > end_day - window_days) if window_days > 0 else rows

    def scores(group: Column, n_groups: int, selected: DataFrame, selected_recent: DataFrame) -> sp.csr_matrix:
        window = net_cells(selected_recent, group, WEIGHT, n_groups, n_items)
        all_time = net_cells(selected, group, WEIGHT_ALL_TIME, n_groups, n_items)
        return _with_all_time_fallback(window, all_time)

    pop_global = scores(F.lit(0), 1, rows, recent).toarray()[0].astype(np.float32)
    pop_channel = scores(F.col(CHANNEL), maps.n_channels, rows, recent).toarray().astype(np.float32)

    k = max(int(settings.popularity_store_top_k), 0)
    store_items = np.full((maps.n_stores, k), -1, dtype=np.int32)
    store_scores = np.zeros((maps.n_stores, k), dtype=np.float32)
    if maps.n_stores and k:
        in_store = rows.where(F.col(STORE) >= 0)
        per_store = scores(F.col(STORE), maps.n_stores, in_store, in_store.where(
            F.col(C.DAY) > end_day - window_days) if window_days > 0 else in_store)
        indptr, positions, row_of = top_k_per_row(per_store, k)
        slot = np.arange(positions.size, dtype=np.int64) - np.repeat(indptr[:-1], np.diff(indptr))
        store_items[row_of, slot] = per_store.indices[positions]
        store_scores[row_of, slot] = per_store.data[positions]
    logger.info("popularity: %d items scored overall, %d channels, %d stores (top %d)",
                int((pop_global > 0).sum()), maps.n_channels, maps.n_stores, k)
    return {POP_GLOBAL: pop_global, POP_CHANNEL: pop_channel, POP_STORE_ITEMS: store_items,
            POP_STORE_SCORES: store_scores, ITEM_TREND: spark_item_trend(rows, n_items, end_day)}


def spark_item_trend(rows: DataFrame, n_items: int, end_day: int) -> np.ndarray:
    """:func:`recsvc_training.models.popularity.item_trend`: distinct buyers this week against four weeks."""
    from pyspark.sql import functions as F

    bought = rows.where((F.col(EVENT) == event_code(C.PURCHASE)) & (F.col(C.DAY) <= end_day)
                        & (F.col(C.DAY) > end_day - TREND_REFERENCE_DAYS))
    counts = (bought.groupBy(ITEM).agg(
        F.countDistinct(F.when(F.col(C.DAY) > end_day - TREND_RECENT_DAYS, F.col(CUSTOMER))).alias("_recent"),
        F.countDistinct(CUSTOMER).alias("_reference")).toPandas())
    recent = np.zeros(n_items)
    reference = np.zeros(n_items)
    item = counts[ITEM].to_numpy(dtype=np.int64)
    recent[item] = counts["_recent"].to_numpy(dtype=np.float64)
    reference[item] = counts["_reference"].to_numpy(dtype=np.float64)
    scale = TREND_REFERENCE_DAYS / TREND_RECENT_DAYS
    return (np.log1p(recent * scale) - np.log1p(reference)).astype(np.float32)
