"""Co-purchase on Spark: an exact self-join of baskets, as :mod:`recsvc_training.models.copurchase` counts it.

A basket is the distinct items of the purchase lines sharing a ``basket_id``; baskets with more than
``copurchase_max_basket`` items are dropped whole. ``n_a`` (baskets holding ``a``) is a count per item and
``n_ab`` a self-join of (basket, item) on the basket, every ordered pair ``a != b``, counted. Pairs below
``copurchase_min_support`` are dropped before anything leaves Spark, the score (the Wilson lower bound of
``n_ab`` of ``n_a``) is computed in Spark SQL, and the top ``copurchase_top_k`` per anchor (score descending,
item row ascending) is a window ``row_number``. Every pair is counted exactly (no sampling, no FPGrowth support
threshold over all baskets), so the long tail that bundles need stays.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from recsvc.artifacts.parts.copurchase import COPURCHASE_INDPTR, COPURCHASE_ITEMS, COPURCHASE_SCORES, COPURCHASE_SUPPORT
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps
from recsvc_training.spark.events import EVENT, ITEM, event_code

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)


def wilson_lower_bound(successes: Column, trials: Column, z: float) -> Column:
    """:func:`recsvc_training.models.copurchase.wilson_lower_bound` in Spark SQL (doubles)."""
    from pyspark.sql import functions as F

    p = successes / trials
    z2 = z * z
    margin = F.lit(z) * F.sqrt(p * (F.lit(1.0) - p) / trials + F.lit(z2) / (F.lit(4.0) * trials * trials))
    return F.greatest((p + F.lit(z2) / (F.lit(2.0) * trials) - margin) / (F.lit(1.0) + F.lit(z2) / trials),
                      F.lit(0.0))


def build_spark_copurchase(rows: DataFrame, maps: IdMaps, settings: TrainingSettings
                           ) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of :func:`recsvc_training.models.copurchase.build_copurchase`, and the number of distinct
    purchase baskets (the run's ``baskets`` row count, before the size cut)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    lines = rows.where(F.col(EVENT) == event_code(C.PURCHASE)).select(C.BASKET_ID, ITEM).distinct()
    sizes = lines.groupBy(C.BASKET_ID).agg(F.count(F.lit(1)).alias("_size"))
    n_baskets = int(sizes.count())
    max_basket = int(settings.copurchase_max_basket)
    used = sizes.where(F.col("_size") <= max_basket) if max_basket > 0 else sizes
    basket_items = lines.join(used.select(C.BASKET_ID), C.BASKET_ID, "inner")
    n_a = basket_items.groupBy(ITEM).agg(F.count(F.lit(1)).alias("_n_a"))
    left = basket_items.select(C.BASKET_ID, F.col(ITEM).alias("_a"))
    right = basket_items.select(C.BASKET_ID, F.col(ITEM).alias("_b"))
    support = max(int(settings.copurchase_min_support), 1)
    pairs = (left.join(right, C.BASKET_ID).where(F.col("_a") != F.col("_b"))
             .groupBy("_a", "_b").agg(F.count(F.lit(1)).alias("_n_ab"))
             .where(F.col("_n_ab") >= support))
    scored = pairs.join(n_a.withColumnRenamed(ITEM, "_a"), "_a").withColumn(
        "_score", wilson_lower_bound(F.col("_n_ab").cast("double"), F.col("_n_a").cast("double"),
                                     float(settings.copurchase_confidence_z)))
    rank = F.row_number().over(Window.partitionBy("_a").orderBy(F.col("_score").desc(), F.col("_b").asc()))
    top = (scored.withColumn("_rank", rank).where(F.col("_rank") <= int(settings.copurchase_top_k))
           .select("_a", "_b", "_score", "_n_ab", "_rank").toPandas())
    top = top.iloc[np.lexsort((top["_rank"].to_numpy(), top["_a"].to_numpy()))]
    anchor = top["_a"].to_numpy(dtype=np.int64)
    indptr = np.zeros(maps.n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(anchor, minlength=maps.n_items), out=indptr[1:])
    logger.info("co-purchase: %d baskets, %d pairs kept (support >= %d, top %d per item)", n_baskets, len(top),
                support, settings.copurchase_top_k)
    return {
        COPURCHASE_INDPTR: indptr,
        COPURCHASE_ITEMS: top["_b"].to_numpy(dtype=np.int32),
        COPURCHASE_SCORES: top["_score"].to_numpy(dtype=np.float32),
        COPURCHASE_SUPPORT: top["_n_ab"].to_numpy(dtype=np.int32),
    }, n_baskets
