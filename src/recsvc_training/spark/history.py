"""Purchase history and repurchase rhythm on Spark, as :mod:`recsvc_training.models.repurchase` builds them.

Per (customer, item): purchase lines, units bought and returned, first and last purchase day, the
recency-weighted line count and where the latest purchase happened (``max_by`` over time, ties by source row:
the order of the single-node trainer's stable sort) are one Spark aggregation. Per item: the median gap between
one customer's consecutive distinct purchase days (a window ``lag`` and Spark's exact ``percentile``) and the
share of buyers with two or more purchase days. What comes back is the history's pairs (the size of the part)
and one row per item.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from recsvc.artifacts.parts.history import (
    HIST_COUNT,
    HIST_DECAYED,
    HIST_FIRST_DAY,
    HIST_INDPTR,
    HIST_ITEMS,
    HIST_LAST_CHANNEL,
    HIST_LAST_DAY,
    HIST_LAST_STORE,
)
from recsvc.artifacts.parts.repurchase import ITEM_REPURCHASE_DAYS, ITEM_REPURCHASE_RATE
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps
from recsvc_training.spark.events import CHANNEL, CUSTOMER, EVENT, ITEM, STORE, event_code
from recsvc_training.spark.ingest import SOURCE_ROW, TS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

#: Net units at or below this count as "everything was returned" (as in the single-node builder).
_NET_EPSILON = 1e-9


def build_spark_history(rows: DataFrame, maps: IdMaps, end_day: int, half_life_days: float) -> dict[str, np.ndarray]:
    """The arrays of :func:`recsvc_training.models.repurchase.build_repurchase` (with ``end_day``)."""
    from pyspark.sql import functions as F

    purchases = rows.where(F.col(EVENT) == event_code(C.PURCHASE))
    returns = (rows.where(F.col(EVENT) == event_code(C.RETURN)).groupBy(CUSTOMER, ITEM)
               .agg(F.sum(C.QUANTITY).alias("_returned")))
    order = F.struct(F.col(TS), F.col(SOURCE_ROW))
    pairs = purchases.groupBy(CUSTOMER, ITEM).agg(
        F.count(F.lit(1)).alias("_lines"), F.sum(C.QUANTITY).alias("_bought"),
        F.min(C.DAY).alias("_first"), F.max(C.DAY).alias("_last"),
        F.sum(F.pow(F.lit(0.5), (F.lit(end_day) - F.col(C.DAY).cast("double")) / float(half_life_days)))
        .alias("_decayed"),
        F.max_by(F.struct(F.col(CHANNEL), F.col(STORE)), order).alias("_where"))
    pairs = pairs.join(returns, [CUSTOMER, ITEM], "left")
    net = F.col("_bought") - F.coalesce(F.col("_returned"), F.lit(0.0))
    share = F.greatest(net, F.lit(0.0)) / F.when(F.col("_bought") > 0, F.col("_bought")).otherwise(F.lit(1.0))
    kept = (pairs.where(net > _NET_EPSILON)
            .select(CUSTOMER, ITEM, (F.col("_lines") * share).alias("_count"), (F.col("_decayed") * share)
                    .alias("_decayed"), "_first", "_last", F.col("_where.ch").alias("_ch"),
                    F.col("_where.s").alias("_s"))
            .toPandas())
    order_rows = np.lexsort((kept[ITEM].to_numpy(), kept[CUSTOMER].to_numpy()))
    kept = kept.iloc[order_rows]
    customer = kept[CUSTOMER].to_numpy(dtype=np.int64)
    indptr = np.zeros(maps.n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(customer, minlength=maps.n_customers), out=indptr[1:])
    arrays = {
        HIST_INDPTR: indptr,
        HIST_ITEMS: kept[ITEM].to_numpy(dtype=np.int32),
        HIST_COUNT: kept["_count"].to_numpy(dtype=np.float32),
        HIST_FIRST_DAY: kept["_first"].to_numpy(dtype=np.int32),
        HIST_LAST_DAY: kept["_last"].to_numpy(dtype=np.int32),
        HIST_LAST_CHANNEL: kept["_ch"].to_numpy(dtype=np.int16),
        HIST_LAST_STORE: kept["_s"].to_numpy(dtype=np.int32),
        HIST_DECAYED: kept["_decayed"].to_numpy(dtype=np.float32),
    }
    arrays.update(_repurchase_cycles(purchases, maps.n_items))
    logger.info("purchase history: %d (customer, item) pairs, %d customers with history", len(kept),
                int((np.diff(indptr) > 0).sum()))
    return arrays


def _repurchase_cycles(purchases: DataFrame, n_items: int) -> dict[str, np.ndarray]:
    """Median repeat gap and repeat-buyer share per item (every purchase counts, returned or not)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    days = purchases.select(CUSTOMER, ITEM, C.DAY).distinct()
    gap = F.col(C.DAY) - F.lag(C.DAY).over(Window.partitionBy(CUSTOMER, ITEM).orderBy(C.DAY))
    gaps = (days.select(ITEM, gap.alias("_gap")).where(F.col("_gap").isNotNull())
            .groupBy(ITEM).agg(F.percentile(F.col("_gap"), 0.5).alias("_median")).toPandas())
    per_pair = days.groupBy(CUSTOMER, ITEM).agg(F.count(F.lit(1)).alias("_days"))
    rates = (per_pair.groupBy(ITEM).agg(F.count(F.lit(1)).alias("_buyers"),
                                        F.sum(F.when(F.col("_days") >= 2, 1).otherwise(0)).alias("_repeaters"))
             .toPandas())
    days_out = np.full(n_items, np.nan, dtype=np.float32)
    rate_out = np.zeros(n_items, dtype=np.float32)
    days_out[gaps[ITEM].to_numpy(dtype=np.int64)] = gaps["_median"].to_numpy(dtype=np.float32)
    buyers = rates["_buyers"].to_numpy(dtype=np.float64)
    rate_out[rates[ITEM].to_numpy(dtype=np.int64)] = (rates["_repeaters"].to_numpy(dtype=np.float64)
                                                     / buyers).astype(np.float32)
    return {ITEM_REPURCHASE_DAYS: days_out, ITEM_REPURCHASE_RATE: rate_out}
